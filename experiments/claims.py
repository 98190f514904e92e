"""The paper's three claims, judged from the paper-regime and particle-sweep results.

Pure functions of the dicts that `experiments/paper_regime.py` writes to
results/paper_regime.json and results/particle_sweep.json, and of paired NLL
differences over the same test digits; `claims_section` returns the lines of
RESULTS.md's section on the claims. No TensorFlow (NumPy only), no files: the report and the
tests call it with plain dicts.

The claims (Dieng & Paisley, 2019):
  1. log-likelihood: REM > IWAE > VAE (Tables 1 and 2, K = 1000);
  2. REM's encoder has a higher KL to the prior than the IWAE's (Figure 2);
  3. the IWAE's KL to the prior falls as K grows (Figure 2).
"""

import math

import numpy as np

# RESULTS.md's zoo section (experiments/zoo.py) lies between these lines.
ZOO_MARKERS = ("<!-- zoo:begin -->", "<!-- zoo:end -->")
NAMES = {"iwae": "IWAE", "vae": "VAE", "rem_v1": "REM v1", "rem_v2": "REM v2"}


def paired_difference(a, b):
    """Mean and 95 % half-width of a − b over the same test digits (evaluation noise + digits)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(d.mean()), float(1.96 * d.std(ddof=1) / math.sqrt(len(d)))


def direction(mean, half):
    """Where a paired difference NLL(a) − NLL(b) with 95 % half-width `half` puts a.

    Returns "ahead" (a's NLL lower: better), "behind", or "level" (the interval holds 0).
    """
    if mean + half < 0:
        return "ahead"
    if mean - half > 0:
        return "behind"
    return "level"


def _difference_text(a, b, difference):
    mean, half = difference
    return (f"{NAMES.get(a, a)} − {NAMES.get(b, b)} = {mean:+.2f} nats "
            f"[{mean - half:+.2f}, {mean + half:+.2f}] ({direction(mean, half)})")


def _curve_text(a, b, paper):
    """At equal steps, from the learning curves: a against b at their common kept steps."""
    curve_a = {step: nll for step, _, nll in paper.get(a, {}).get("curve", [])}
    curve_b = {step: nll for step, _, nll in paper.get(b, {}).get("curve", [])}
    common = sorted(set(curve_a) & set(curve_b))
    if not common:
        return None
    gaps = [curve_a[s] - curve_b[s] for s in common]
    where = ("ahead of" if max(gaps) < 0 else "behind" if min(gaps) > 0 else "on both sides of")
    digits = paper[a].get("curve_examples")
    examples = f"first {digits:,} test digits" if digits else "test digits"
    return (f"on the learning curves ({examples})"
            f" {NAMES.get(a, a)} is {where} the "
            f"{NAMES.get(b, b)} at all {len(common)} common kept steps "
            f"({common[0]:,}–{common[-1]:,}), by {min(abs(g) for g in gaps):.1f}–"
            f"{max(abs(g) for g in gaps):.1f} nats")


def equal_time_text(methods, reference, paper):
    """The curve NLLs of `methods` at `reference`'s last curve point's training CPU time
    (linear between each method's kept checkpoints), beside `reference`'s, in one sentence;
    None if no method's curve reaches that time."""
    def points(method):
        row = paper.get(method, {})
        return [(cpu, nll) for (_, _, nll), cpu in zip(row.get("curve", []),
                                                       row.get("curve_cpu_seconds", []))]

    reference_points = points(reference)
    if not reference_points:
        return None
    cpu, reference_nll = reference_points[-1]
    at_cpu = []
    for method in methods:
        method_points = points(method)
        for (cpu_0, nll_0), (cpu_1, nll_1) in zip(method_points, method_points[1:]):
            if cpu_0 <= cpu <= cpu_1:
                nll = nll_1 if cpu_1 == cpu_0 else (  # equal times: tiny runs
                    nll_0 + (cpu - cpu_0) / (cpu_1 - cpu_0) * (nll_1 - nll_0))
                at_cpu.append(f"{NAMES.get(method, method)} {nll:.2f}")
                break
    if not at_cpu:
        return None
    name = NAMES.get(reference, reference)
    return (f"at equal training CPU time ({cpu / 3600:.2f} h, the {name}'s last kept "
            f"checkpoint; linear between kept checkpoints) the learning curves' NLLs are "
            f"{', '.join(at_cpu)} against the {name}'s {reference_nll:.2f}")


def log_likelihood_claim(paper, differences):
    """Claim 1 at K = 1000: (verdict, [sentences]).

    Args:
      paper: results/paper_regime.json's dict, {method: {"test_nll", "curve", ...}}.
      differences: {(a, b): (mean, half)} of paired NLL(a) − NLL(b) on all test digits,
        for the evaluated methods.
    """
    pairs = [("rem_v1", "iwae"), ("rem_v2", "iwae"), ("iwae", "vae")]
    found, missing, sentences = {}, [], []
    for a, b in pairs:
        if (a, b) in differences:
            found[(a, b)] = direction(*differences[(a, b)])
            sentences.append(_difference_text(a, b, differences[(a, b)]))
        elif curve := _curve_text(a, b, paper):
            sentences.append(f"{NAMES[a]} − {NAMES[b]} is not evaluated on all test digits "
                             f"yet; {curve}")
        else:
            missing.append(f"{NAMES[a]} − {NAMES[b]}")
    if any(d == "behind" for d in found.values()):
        verdict = "not supported"
    elif any(d == "level" for d in found.values()):
        verdict = "not resolved"
    elif not found:
        verdict = "not yet measured"
    elif len(found) < len(pairs):
        verdict = "supported so far"
    else:
        verdict = "supported"
    if missing:
        sentences.append("not measured yet: " + ", ".join(missing))
    if text := equal_time_text(("rem_v1", "rem_v2"), "iwae", paper):
        sentences.append(text)
    return verdict, sentences


def kl_claim(paper, sweep):
    """Claim 2, REM's KL to the prior above the IWAE's, at K = 1000 and each swept K."""
    points = []  # (K, method, kl_rem, kl_iwae)
    for method in ("rem_v1", "rem_v2"):
        rem, iwae = paper.get(method, {}), paper.get("iwae", {})
        if rem.get("kl_to_prior") is not None and iwae.get("kl_to_prior") is not None:
            points.append((rem["num_particles"], method, rem["kl_to_prior"], iwae["kl_to_prior"]))
        for k, row in sweep.get(method, {}).items():
            iwae_row = sweep.get("iwae", {}).get(k)
            if iwae_row and int(k) != rem.get("num_particles"):
                points.append((int(k), method, row["kl_to_prior"], iwae_row["kl_to_prior"]))
    if not points:
        return "not yet measured", []
    above = [p for p in points if p[2] > p[3]]
    verdict = ("supported" if len(above) == len(points) else "not supported" if not above
               else f"partly supported ({len(above)} of {len(points)} comparisons)")
    sentences = []
    for k in sorted({p[0] for p in points}):
        at_k = sorted(p for p in points if p[0] == k)
        rems = ", ".join(f"{NAMES[m]} {kl_rem:.2f}" for _, m, kl_rem, _ in at_k)
        sentences.append(f"K = {k}: {rems} vs IWAE {at_k[0][3]:.2f}")
    return verdict, sentences


def iwae_kl_falls_claim(sweep, paper=None):
    """Claim 3, the IWAE's KL to the prior falling as K grows, over the swept K and the
    paper-regime IWAE's K (the same run as the sweep's largest K, at the same step)."""
    kls = {int(k): row["kl_to_prior"] for k, row in sweep.get("iwae", {}).items()}
    iwae = (paper or {}).get("iwae", {})
    if iwae.get("kl_to_prior") is not None:
        kls.setdefault(int(iwae["num_particles"]), iwae["kl_to_prior"])
    rows = sorted(kls.items())
    if len(rows) < 2:
        return "not yet measured", []
    kls = [kl for _, kl in rows]
    if all(b < a for a, b in zip(kls, kls[1:])):
        verdict = "supported (it falls at every step of K)"
    elif kls[-1] < kls[0]:
        verdict = ("partly supported (lower at the largest K than at the smallest, "
                   "not at every step)")
    else:
        verdict = "not supported"
    return verdict, [", ".join(f"K = {k}: {kl:.2f}" for k, kl in rows)]


def claims_section(paper, sweep, differences):
    """RESULTS.md's lines on the paper's three claims (Markdown)."""
    verdict_1, said_1 = log_likelihood_claim(paper, differences)
    verdict_2, said_2 = kl_claim(paper, sweep)
    verdict_3, said_3 = iwae_kl_falls_claim(sweep, paper)
    steps = sorted({row["steps"] for row in paper.values() if row.get("test_nll") is not None})
    cpu_hours = [row["cpu_seconds"] / 3600 for m, row in paper.items()
                 if m.startswith("rem") and row.get("cpu_seconds") and row.get("test_nll")]
    seeded = sorted({int(k) for rows in sweep.values() for k, row in rows.items()
                     if row.get("other_seeds")})
    seeds = sorted({row["seed"] for row in (*paper.values(), *(
        row for rows in sweep.values() for row in rows.values())) if "seed" in row})
    budget = (f"K = 1000, batch 20, {', '.join(f'{s:,}' for s in steps)} steps"
              if steps else "K = 1000, batch 20, runs still training")
    lines = [
        "## The paper's three claims, in these runs",
        "",
        "Generated from results/paper_regime.json and results/particle_sweep.json by "
        "`python experiments/paper_regime.py --phase=report`. Differences are paired over the "
        "same 10,000 test digits, with the 95 % interval of the evaluation's Monte-Carlo and "
        "digit-sampling noise; the runs behind the verdicts are "
        + (f"seed {' and '.join(map(str, seeds))}" if seeds else "one seed each")
        + ", so seed-to-seed variation is not in these intervals"
        + (f" (a REM run at this budget took {min(cpu_hours):.2f}"
           + (f"–{max(cpu_hours):.2f}" if max(cpu_hours) - min(cpu_hours) >= 0.005 else "")
           + " CPU-hours here)." if cpu_hours else ".")
        + (" The particle sweep's runs at K = " + ", ".join(map(str, seeded))
           + " also ran with other seeds: its seed table shows that variation." if seeded else ""),
        "",
        f"1. **Log-likelihood: REM > IWAE > VAE** ({budget}; at equal steps): **{verdict_1}**. "
        + "; ".join(said_1) + ".",
        f"2. **REM's encoder has a higher KL to the prior than the IWAE's**: **{verdict_2}**"
        + (". " + "; ".join(said_2) + "." if said_2 else "."),
        f"3. **The IWAE's KL to the prior falls as K grows** (particle sweep): **{verdict_3}**"
        + (". " + "; ".join(said_3) + "." if said_3 else "."),
        "",
    ]
    return lines
