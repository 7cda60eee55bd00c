"""PersRM: PAD's personalised reward model -- pairs (``data``), training (``train``), CLI (``cli``) and the
P-Soups-style pair builder (``make_pairs``)."""
from .data import Pair, load_pairs, parse_pair, write_pairs  # noqa: F401
from .train import preference_accuracy, train_persrm  # noqa: F401
