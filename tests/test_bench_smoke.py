"""The end-to-end benchmark in smoke mode (tiny random model, 2 tokens): it runs, writes its three files and
resumes from its JSON. No timing assertion."""
from __future__ import annotations

import importlib.util
import json
import pathlib

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench" / "bench_e2e.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_e2e", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_e2e_smoke(tmp_path):
    bench = _load()
    args = ["--smoke", "--out-dir", str(tmp_path), "--no-progress", "--methods", "base,amulet,nonexistent",
            "--batch-sizes", "1,2"]
    assert bench.main(args) == 0
    data = json.loads((tmp_path / "e2e_smoke.json").read_text())
    res = data["results"]
    for key in ("base@1", "amulet@2", "authors_amulet@1", "two_cache@2"):
        assert res[key]["status"] == "ok", res[key]
        assert res[key]["tokens_per_s"] > 0 and res[key]["ms_per_token"] > 0
    assert res["base@2"]["tokens_per_row"] == [2, 2]           # EOS ignored: every row has the same length
    assert res["nonexistent@1"]["status"].startswith("skipped")
    md = (tmp_path / "e2e_smoke.md").read_text()
    assert "| amulet |" in md and "baseline: two_cache" in md
    assert (tmp_path / "e2e_smoke.png").stat().st_size > 1000

    # resume: nothing is measured again
    calls = []
    bench.run_ours = lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(AssertionError("re-measured"))
    assert bench.main(args) == 0 and not calls


def test_baselines_agree_with_pyalign_greedy():
    """The two-cache baseline and pyalign's batched amulet pick the same greedy tokens on a tiny model."""
    import sys
    import torch
    sys.path.insert(0, str(BENCH.parent))
    import baselines
    import pyalign
    from pyalign.preferences import batch_context_ids, get_preference
    from pyalign.models import load_tokenizer, tiny_random_model
    tok = load_tokenizer()
    model = tiny_random_model(vocab_size=len(tok), hidden=32, layers=2, heads=4, seed=1, max_positions=1024)
    prompts = ["How do I boil an egg?", "Why is the sky blue today?"]
    pref, base = batch_context_ids(tok, prompts, get_preference("concise"), "system")
    ours = pyalign.generate(model, tok, prompts, preference="concise", method="amulet", max_new_tokens=3,
                            ignore_eos=True)
    two = baselines.two_cache(model, pref, base, 3, pyalign.amulet_weight(), tok.pad_token_id)
    assert [r.token_ids for r in ours] == two
    authors = baselines.authors_amulet(model, pref[:1], base[:1], 2, full_seq_softmax=False)
    assert authors[0] == two[0][:2]
    assert torch.get_num_threads() >= 1


def test_bench_decode_smoke(tmp_path):
    """The decode-loop benchmark runs end to end (tiny model): eviction changes no token; resume re-measures nothing."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_decode", BENCH.parent / "bench_decode.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--smoke", "--out-dir", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "decode_smoke.json").read_text())
    assert data["mixed"]["same_tokens"] and len(data["long"]["ms_per_token"]) == 3
    mod.mixed = lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-measured"))
    assert mod.main(["--smoke", "--out-dir", str(tmp_path)]) == 0
