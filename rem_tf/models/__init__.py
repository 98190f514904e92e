"""One Keras model per method, all on `GenerativeModel`."""

from rem_tf.models.base import GenerativeModel, Losses
from rem_tf.models.ciwae import CIWAE
from rem_tf.models.iwae import IWAE
from rem_tf.models.iwae_dreg import IWAEDReG
from rem_tf.models.iwae_stl import IWAESTL
from rem_tf.models.miwae import MIWAE
from rem_tf.models.piwae import PIWAE
from rem_tf.models.rem_v1 import REMv1
from rem_tf.models.rem_v2 import REMv2
from rem_tf.models.rws import RWS
from rem_tf.models.vae import VAE

METHODS = {
    "vae": VAE,
    "iwae": IWAE,
    "rem_v1": REMv1,
    "rem_v2": REMv2,
    "rws": RWS,
    "iwae_stl": IWAESTL,
    "iwae_dreg": IWAEDReG,
    "miwae": MIWAE,
    "ciwae": CIWAE,
    "piwae": PIWAE,
}
"""The methods by name (also `rem_tf.METHODS`): `rem_tf.build_model(name, ...)` builds one."""
