"""Training from a config: resume or start, one `fit` per epoch, checkpoints, export.

    saved_model = train(config, "runs/quick")   # again: resumes, or only re-exports if finished

The run directory is described in `rem_tf.experiment.run_files`; the
checkpoints in `rem_tf.experiment.checkpoints`.
"""

import contextlib
import os
import pathlib
import shutil
import sys
import tempfile
import time

import keras
import tensorflow as tf
from absl import logging

from rem_tf import export, schedules
from rem_tf.experiment import builders, callbacks, checkpoints, run_files
from rem_tf.experiment.config import as_dict, check_config, check_resumable
from rem_tf.experiment.errors import ConfigError, Interrupted, TrainingDiverged, interruptible
from rem_tf.experiment.evaluating import evaluate


def train(config, workdir=None, *, extra_callbacks=()):
    """Trains the model of `config` in `workdir` (resuming from its checkpoints) and exports it.

    Reads every field of the config but `evaluation.split / num_samples /
    batch_size / active_units_threshold / num_examples / proposal`. A run that
    is already finished is left as it is (log, checkpoints, train_summary.json)
    and only exported again. The process owns `workdir` meanwhile (`run_files.owned`:
    a second process is refused), and SIGTERM acts as Ctrl-C.

    Args:
      config: an `ml_collections.ConfigDict` like configs/default.py's (fields it
        lacks get their default).
      workdir: the run directory; default `config.workdir`.
      extra_callbacks: more Keras callbacks for every epoch's `fit`.

    Returns:
      The path of the SavedModel (`<workdir>/saved_model`); None on a
      multi-worker worker that is not the chief.

    Raises:
      ConfigError: a bad config value, workdir or checkpoint, or a workdir another
        process runs in.
      StorageError: a file of the run could not be written (a `ConfigError`).
      Interrupted: Ctrl-C or SIGTERM (a checkpoint was saved: run again to resume).
      TrainingDiverged: a NaN or Inf loss (the last good checkpoint is kept).
      rem_tf.data.DataError: missing or bad data files.
    """
    with contextlib.ExitStack() as held:
        return _train(config, workdir, "train", extra_callbacks, held)[0]


def train_and_evaluate(config, workdir=None, *, extra_callbacks=()):
    """`train`, then `evaluate` of the SavedModel; returns the evaluation (None off the chief)."""
    with contextlib.ExitStack() as held:  # the workdir's lock, for both steps
        saved, config = _train(config, workdir, "train_and_evaluate", extra_callbacks, held)
        return None if saved is None else evaluate(config, saved, config.workdir)


def _prepare(config, workdir, mode):
    """The checked config with its workdir, and the workdir (not a file)."""
    config = check_config(config, mode)
    workdir = config.workdir if workdir is None else workdir
    if workdir is None:
        raise ConfigError("no run directory: give --workdir (or set config.workdir)")
    config.workdir = str(workdir)
    workdir = pathlib.Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"the workdir {workdir} is a file (--workdir); give a directory")
    blocking = next((p for p in workdir.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"the workdir {workdir} lies inside {blocking}, which is a file "
                          "(--workdir); give a directory")
    return config, workdir


def _check_stored_config(config, workdir):
    """Refuses a config that differs from the run's: its config.json and the copy beside its
    checkpoints (so deleting config.json is no way round); checkpoints with neither, too."""
    copy = workdir / "checkpoints" / checkpoints.CONFIG_COPY
    records = [path for path in (workdir / "config.json", copy) if path.is_file()]
    for path in records:
        other = f" (or copy {copy} over it)" if path != copy and copy.is_file() else ""
        check_resumable(run_files.read_json(path, f"fix it{other}, or use a new --workdir"),
                        config)
    if not records and any((workdir / "checkpoints").glob("ckpt-*.index")):
        raise ConfigError(f"the run directory {workdir} has checkpoints but no config.json to "
                          "check this config against; put its config.json back, or use a new "
                          "--workdir")


def _write_run_files(config, workdir, mode, replicas, steps_per_epoch, start_step):
    """config.json (and its copy beside the checkpoints), versions.json, run.json."""
    batch = config.training.batch_size
    run_files.write_json(workdir / "config.json", as_dict(config))
    with run_files.writing(workdir / "checkpoints", "create"):
        (workdir / "checkpoints").mkdir(exist_ok=True)
    run_files.write_json(workdir / "checkpoints" / checkpoints.CONFIG_COPY, as_dict(config))
    run_files.write_json(workdir / "versions.json", run_files.versions())
    run_files.write_json(workdir / "run.json", {
        "command": sys.argv, "mode": mode, "strategy": config.distribute.strategy,
        "num_replicas": replicas, "global_batch_size": batch,
        "per_replica_batch_size": batch // replicas, "steps_per_epoch": steps_per_epoch,
        "total_steps": steps_per_epoch * config.training.epochs,
        "resumed_from_step": start_step, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def _summary_problem(path, step, digest):
    """Why the train_summary.json at `path` does not describe the finished run (step,
    weights), or None."""
    try:
        summary = run_files.read_json(path)
    except ConfigError as err:
        return str(err).split(";")[0]
    if summary.get("global_step") != step or summary.get("weights_sha256") != digest:
        return f"{path} does not match the checkpoint (step {step}, weights sha256 {digest})"
    return None


def _steps_per_epoch(config, batch):
    steps = builders.train_dataset(config, batch)[1]
    if steps < 1:
        raise ConfigError(
            f"the {config.data.train_split} split of {builders.data_label(config)} has fewer "
            "images than "
            f"one batch ({batch}, training.batch_size)"
        )
    spe = config.training.steps_per_execution
    if steps % spe:
        raise ConfigError(
            f"training.steps_per_execution ({spe}) must divide the steps per epoch ({steps})"
        )
    return steps


def _train(config, workdir, mode, extra_callbacks, held):
    """Trains and exports; `held` (an ExitStack) keeps the workdir's lock and the SIGTERM
    handler until the caller is done (train_and_evaluate evaluates under them too)."""
    config, workdir = _prepare(config, workdir, mode)
    held.enter_context(interruptible())
    strategy = builders.make_strategy(config)
    replicas = strategy.num_replicas_in_sync
    is_chief = strategy.extended.should_checkpoint
    batch = config.training.batch_size
    if batch % replicas:
        raise ConfigError(
            f"batch size {batch} (--batch_size / config.training.batch_size, the global batch) "
            f"is not divisible by the {replicas} replicas of the {config.distribute.strategy} "
            "strategy"
        )
    # Non-chief workers write their (unused) files to a scratch directory.
    scratch = None if is_chief else pathlib.Path(tempfile.mkdtemp(prefix="rem_tf_worker_"))
    own_dir = workdir if is_chief else scratch
    if is_chief:  # one owner; also the check that the workdir is writable, before any work
        held.enter_context(run_files.owned(workdir))
    _check_stored_config(config, workdir)

    keras.utils.set_random_seed(config.seed)
    bias = builders.output_bias(config)
    steps_per_epoch = _steps_per_epoch(config, batch)
    with strategy.scope():
        model = builders.build_model_from_config(config, decoder_output_bias=bias,
                                                 input_shape=builders.input_shape(config))
        builders.compile_model(model, config, steps_per_epoch)
    checkpoint = checkpoints.training_checkpoint(model)
    latest = checkpoints.restore_latest(checkpoint, workdir / "checkpoints")
    start_step = int(model.optimizer.iterations.numpy())
    spe = config.training.steps_per_execution
    if start_step % spe:
        raise ConfigError(
            f"training.steps_per_execution ({spe}) must divide the resumed step {start_step}"
        )
    if latest:
        logging.info("Resuming %s from step %d (epoch %d, step %d of %d).", latest, start_step,
                     start_step // steps_per_epoch + 1, start_step % steps_per_epoch,
                     steps_per_epoch)
    plan = builders.epoch_plan(start_step, steps_per_epoch, config.training.epochs)
    if is_chief:
        checkpoints.repair_state(workdir / "checkpoints")
    if is_chief and plan:
        _write_run_files(config, workdir, mode, replicas, steps_per_epoch, start_step)
    elif not plan:
        logging.info("The run in %s is finished (step %d); exporting it again.", workdir,
                     start_step)
    logging.info(
        "%s on %s: %d replica(s), global batch %d (%d per replica), %d steps per epoch, "
        "%d epochs, workdir %s", config.method, builders.data_label(config), replicas, batch,
        batch // replicas, steps_per_epoch, config.training.epochs, workdir,
    )

    manager = tf.train.CheckpointManager(checkpoint, str(own_dir / "checkpoints"), max_to_keep=2)
    every = config.training.keep_checkpoint_every_steps
    kept = checkpoints.KeptCheckpoints(own_dir / "kept_checkpoints", every) if every else None
    saver = callbacks.Checkpoints(
        manager, config.training.checkpoint_every_steps, start_step, kept,
        restore_metrics_from=latest if start_step % steps_per_epoch else None,
    )
    saver.set_model(model)  # also used outside `fit` (Ctrl-C)
    rate = schedules.make_schedule(
        config.training.schedule, config.training.learning_rate, steps_per_epoch
    )
    epoch_callbacks = [callbacks.LearningRateLogger(rate), callbacks.OneEpoch()]
    log_path = workdir / "train_log.csv"
    if is_chief and plan:
        callbacks.truncate_csv(log_path, start_step // steps_per_epoch)
        epoch_callbacks += [callbacks.CsvLog(log_path),
                            callbacks.EpochScalars(workdir / "tensorboard" / "train")]
    epoch_callbacks += [saver, *extra_callbacks]
    verbose = (1 if sys.stdout.isatty() else 2) if is_chief else 0

    started = time.time()
    history = None  # of the last epoch's `fit`
    if kept is not None:
        kept.start_clock()
    try:
        for epoch, offset in plan:
            dataset, _ = builders.train_dataset(config, batch, epoch, offset)
            # epochs=E and a stop after this one: the progress bar reads "Epoch e/E".
            history = model.fit(
                dataset, initial_epoch=epoch, epochs=config.training.epochs,
                steps_per_epoch=steps_per_epoch - offset, callbacks=epoch_callbacks,
                verbose=verbose, shuffle=False,
            )
    except KeyboardInterrupt:
        step = int(model.optimizer.iterations.numpy())
        if config.distribute.strategy == "multi_worker":  # no collective save without the others
            raise Interrupted(f"Interrupted at step {step}; run the same command to resume from "
                              f"the last checkpoint in {own_dir / 'checkpoints'}.", step) from None
        saved = saver.save()
        if kept is not None and is_chief:
            kept.record_time(saved)
        raise Interrupted(f"Interrupted at step {step}; checkpoint of step {saved} saved in "
                          f"{own_dir / 'checkpoints'}. Run the same command to resume.",
                          step) from None
    except TrainingDiverged as err:
        raise TrainingDiverged(
            f"{config.method}: {err} (epoch {epoch + 1}); the last good checkpoint, "
            f"{manager.latest_checkpoint or 'none'}, is kept. Try more particles "
            "(--num_particles), a lower learning rate (--config.training.learning_rate) or a "
            "larger --config.training.adam_epsilon"
            + (f"; for {config.method} at K = {config.training.num_particles}, "
               "--config.model.covariance=weighted (docs/methods.md, \"REM at small K\")"
               if config.model.covariance == "unweighted" and config.training.num_particles
               < getattr(model, "min_stable_unweighted_particles", 0) else "")
        ) from None

    step = int(model.optimizer.iterations.numpy())
    try:
        saver.save()
        digest, abs_sum = run_files.weights_fingerprint(model)
        task = "chief" if is_chief else f"worker {strategy.cluster_resolver.task_id}"
        print(f"[{task}] finished at step {step}: weights sha256 {digest} sum|w| {abs_sum:.9g}",
              flush=True)
        if not is_chief:
            shutil.rmtree(scratch, ignore_errors=True)
            return None, config
        summary_path = workdir / "train_summary.json"
        # A finished run's summary is left as it is, unless it does not describe the run.
        missing = not summary_path.is_file()
        problem = None if plan or missing else _summary_problem(summary_path, step, digest)
        if problem:
            logging.warning("%s; rewrote it.", problem)
        if plan or missing or problem:
            last_logs = ({k: v[-1] for k, v in history.history.items()} if history is not None
                         else callbacks.last_csv_row(log_path))  # a finished run: its log's
            run_files.write_json(summary_path, {
                "global_step": step, "epochs": config.training.epochs,
                "steps_per_epoch": steps_per_epoch, "resumed_from_step": start_step,
                "final_epoch_metrics": last_logs,
                "weights_sha256": digest, "weights_abs_sum": abs_sum,
                "train_seconds_this_invocation": time.time() - started,
            })
        return export_run(model, config, bias, step), config
    except KeyboardInterrupt:
        raise Interrupted(f"Interrupted after training (step {step}, checkpoint in "
                          f"{own_dir / 'checkpoints'}), before the export was complete. Run "
                          "the same command to export again.", step) from None


def export_run(model, config, bias, global_step):
    """Writes <workdir>/model.keras and <workdir>/saved_model from a plain copy of `model`.

    Returns:
      The SavedModel's path.
    """
    workdir = pathlib.Path(config.workdir)
    # A copy outside any strategy: plain variables, no collectives, same values
    # (weights and particle seed state).
    plain = builders.build_model_from_config(config, decoder_output_bias=bias,
                                             input_shape=model.input_shape)
    for target, source in zip(plain.variables, model.variables, strict=True):
        if target.path != source.path or tuple(target.shape) != tuple(source.shape):
            raise RuntimeError(f"variable mismatch: {target.path} vs {source.path}")
        target.assign(source.numpy())
    # Compiled so that the .keras file holds both optimizers' states; the
    # learning rate is stored as the constant reached at the end (the schedule
    # is in config.json), so the file loads with Keras and rem_tf alone.
    constant = config.copy_and_resolve_references()
    constant.training.schedule = "constant"
    constant.training.learning_rate = float(model.optimizer.learning_rate.numpy())
    builders.compile_model(plain, constant, steps_per_epoch=1)
    for trained, fresh in [(model.optimizer, plain.optimizer),
                           (model.proposal_optimizer, plain.proposal_optimizer)]:
        sources = checkpoints.named_variables(trained.variables, strip_prefix=True)
        for name, target in checkpoints.named_variables(fresh.variables, strip_prefix=True).items():
            if name in sources:
                target.assign(sources[name].numpy())
    keras_path = workdir / "model.keras"
    if keras_path.is_dir():
        raise ConfigError(f"{keras_path} is a directory, not a .keras file; it is not replaced. "
                          "Move it away and run the same command again (the checkpoints are "
                          "kept: it only exports).")
    tmp = workdir / ".model.tmp.keras"
    with run_files.writing(keras_path, clean_up=lambda: tmp.unlink(missing_ok=True)):
        plain.save(str(tmp))
        os.replace(tmp, keras_path)
    with run_files.writing(workdir / "saved_model", "export to"):
        try:
            saved = export.export(
                plain, workdir / "saved_model", chunk_size=config.evaluation.chunk_size,
                elbo_samples=config.evaluation.elbo_samples,
                metadata={"method": config.method, "config": as_dict(config),
                          "versions": run_files.versions(), "global_step": global_step},
            )
        except ValueError as err:  # <workdir>/saved_model holds other files: never replaced
            raise ConfigError(f"{err} (--workdir)") from None
    logging.info("Exported %s and %s.", keras_path, saved)
    return pathlib.Path(saved)
