"""Build a small PersRM pair set from the questions in ../shared/data (see pyalign/persrm/make_pairs.py)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from pyalign.persrm.make_pairs import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
