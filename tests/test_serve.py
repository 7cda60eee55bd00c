"""``pyalign serve``: request validation, the OpenAI wire format, and a live server on a free 127.0.0.1 port
driven by the official ``openai`` client (streaming and not, several preferences in one batch, greedy and seeded
answers equal to ``pyalign.generate``, every bad input → 400 naming the field, disconnects free rows, a full
queue → 429, an engine fault → 500, Ctrl-C, and a bounded load test). Everything talks to 127.0.0.1 only."""
from __future__ import annotations

import concurrent.futures
import functools
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

from pyalign.serve import protocol
from pyalign.serve.protocol import APIError, ServerDefaults, parse_request

openai = pytest.importorskip("openai")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Q = "How do I boil an egg?"
SHORT_SYSTEM = "Answer briefly. {preference}"        # a short system prompt keeps the load test's prefill small


def chat_body(**kw):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    body.update(kw)
    return body


# ============================================================================ protocol (no model, no server)
@pytest.mark.parametrize("body, param", [
    (chat_body(messages=[]), "messages"),
    ({"model": "m"}, "messages"),
    (chat_body(messages=[{"role": "robot", "content": "x"}]), "messages"),
    (chat_body(messages=[{"role": "user", "content": 3}]), "messages"),
    (chat_body(messages=[{"role": "assistant", "content": "only me"}]), "messages"),
    (chat_body(method="nope"), "method"),
    (chat_body(preference="consise"), "preference"),
    (chat_body(preference=3), "preference"),
    (chat_body(method="amulet"), "preference"),             # amulet without a preference
    (chat_body(preference="concise", T=0), "T"),
    (chat_body(preference="concise", eta=0), "eta"),
    (chat_body(preference="concise", alpha="big"), "alpha"),
    (chat_body(preference="concise", ratio=2.0), "ratio"),   # la's parameter sent to amulet
    (chat_body(temperature=-0.5), "temperature"),
    (chat_body(temperature="hot"), "temperature"),
    (chat_body(top_p=0), "top_p"),
    (chat_body(top_p=1.5), "top_p"),
    (chat_body(top_k=-1), "top_k"),
    (chat_body(max_tokens=0), "max_tokens"),
    (chat_body(max_tokens=5, max_completion_tokens=6), "max_completion_tokens"),
    (chat_body(n=0), "n"),
    (chat_body(n=1000), "n"),
    (chat_body(seed=1.5), "seed"),
    (chat_body(stop=["a", "b", "c", "d", "e"]), "stop"),
    (chat_body(stop=[""]), "stop"),
    (chat_body(stream="yes"), "stream"),
    (chat_body(stream_options={"include_usage": True}), "stream_options"),     # without stream
    (chat_body(top_logprobs=3), "top_logprobs"),
    (chat_body(frequency_penalty=0.5), "frequency_penalty"),
    (chat_body(tools=[{"type": "function"}]), "tools"),
    (chat_body(preferance="concise"), "preferance"),         # a typo of an extra field
    (chat_body(placement="middle"), "placement"),
    (chat_body(model=3), "model"),
    ([1, 2], "body"),
])
def test_bad_chat_fields_name_the_field(body, param):
    with pytest.raises(APIError) as e:
        parse_request(body, "chat", ServerDefaults())
    assert e.value.status == 400 and e.value.param == param, (e.value.param, e.value.message)
    assert e.value.to_json()["error"]["param"] == param and e.value.message


@pytest.mark.parametrize("body, param", [
    ({"model": "m"}, "prompt"), ({"prompt": ""}, "prompt"), ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": "x", "logprobs": 5}, "logprobs"), ({"prompt": "x", "echo": True}, "echo"),
    ({"prompt": "x", "best_of": 3}, "best_of"), ({"prompt": "x", "messages": []}, "messages"),
])
def test_bad_completion_fields_name_the_field(body, param):
    with pytest.raises(APIError) as e:
        parse_request(body, "completion", ServerDefaults())
    assert e.value.param == param, e.value.message


def test_parse_defaults_and_overrides():
    d = ServerDefaults(method="la", preference=None, method_params={"ratio": 1.5, "T": 30}, max_tokens=7)
    plain = parse_request(chat_body(), "chat", d)
    assert plain.method == "base" and plain.preference is None          # no preference anywhere: plain model
    assert plain.sampling.max_new_tokens == 7 and plain.sampling.temperature == 0.0
    r = parse_request(chat_body(preference="Concise"), "chat", d)
    assert r.method == "la" and r.preference == "concise" and r.method_params == {"ratio": 1.5}
    r = parse_request(chat_body(preference="like a pirate", method="amulet", alpha=1, max_completion_tokens=3,
                                messages=[{"role": "developer", "content": "S"},
                                          {"role": "user", "content": [{"type": "text", "text": "a"},
                                                                       {"type": "text", "text": "b"}]}]), "chat", d)
    assert r.method == "amulet" and r.method_params == {"T": 30, "alpha": 1.0}
    assert r.submissions[0].prompt == [{"role": "system", "content": "S"}, {"role": "user", "content": "ab"}]
    assert r.sampling.max_new_tokens == 3
    r = parse_request(chat_body(preference="concise", method="base"), "chat", d)
    assert r.preference is None                                            # base ignores the preference


def test_n_and_prompts_give_one_submission_per_choice_with_consecutive_seeds():
    r = parse_request({"prompt": ["a", "b"], "n": 3, "seed": 10, "temperature": 0.7}, "completion",
                      ServerDefaults())
    assert [s.index for s in r.submissions] == list(range(6))
    assert [s.prompt for s in r.submissions] == ["a"] * 3 + ["b"] * 3
    assert [s.kwargs["sampling"].seed for s in r.submissions] == [10, 11, 12] * 2
    choices = [protocol.Choice(index=i, num_prompt_tokens=5 + i // 3, num_generated=i) for i in range(6)]
    assert protocol.usage(choices, 2, 3) == {"prompt_tokens": 11, "completion_tokens": 15, "total_tokens": 26}


def test_finish_reasons_map_to_openai():
    assert [protocol.openai_finish(x) for x in ("eos", "stop", "length", None)] == ["stop", "stop", "length", None]
    with pytest.raises(ValueError):
        protocol.openai_finish("cancelled")


def test_server_defaults_are_validated():
    for kw, param in ((dict(method="nope"), "method"), (dict(preference="consise"), "preference"),
                      (dict(method_params={"Tee": 3}), "Tee"), (dict(temperature=-1), "temperature"),
                      (dict(placement="x"), "placement"), (dict(max_n=0), "max_n")):
        with pytest.raises(ValueError) as e:
            ServerDefaults(**kw)
        assert getattr(e.value, "param", None) == param


def test_cli_flags_build_defaults():
    import argparse
    from pyalign.serve import cli
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    a = p.parse_args(["--port", "0", "--preference", "concise", "--T", "30", "--ratio", "1.5", "--max-batch", "4"])
    d = cli.build_defaults(a)
    assert (a.host, a.port, a.max_batch, a.max_waiting) == ("127.0.0.1", 0, 4, 64)
    assert d.preference == "concise" and d.method == "amulet" and d.method_params == {"T": 30, "ratio": 1.5}
    assert isinstance(d.method_params["T"], int)


# ============================================================================ live server
@pytest.fixture(scope="module")
def model_tok():
    from pyalign.models import load_model
    try:
        return load_model()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def server(model_tok):
    """(base_url, engine, runner) of a server on a free 127.0.0.1 port, for the whole module."""
    from pyalign.engine.hf import HFEngine
    from pyalign.serve.app import create_app
    from pyalign.serve.background import serve_in_thread
    model, tok = model_tok
    engine = HFEngine(model, tok, max_batch=16, max_waiting=64)
    app = create_app(engine, tok, "SmolLM2-135M-Instruct")
    with serve_in_thread(app) as url:
        yield url, engine, app.state.runner


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0], api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def reference(model_tok):
    """pyalign.generate's answer (memoised): what the server must return."""
    import pyalign
    model, tok = model_tok

    @functools.lru_cache(maxsize=None)
    def ref(question, preference, method, max_tokens, extra=()):
        [r] = pyalign.generate(model, tok, question, preference=preference, method=method,
                               max_new_tokens=max_tokens, **dict(extra))
        return r
    return ref


def ask(client, question, max_tokens, preference=None, method=None, **extra):
    body = {k: v for k, v in dict(preference=preference, method=method, **extra).items() if v is not None}
    return client.chat.completions.create(model="SmolLM2-135M-Instruct", max_tokens=max_tokens, extra_body=body,
                                          messages=[{"role": "user", "content": question}])


def raw(url, method, path, body=None, timeout=300):
    """(status, headers, text) of one raw HTTP exchange with ``url + path`` (``body``: bytes or JSON-able)."""
    u = urllib.parse.urlparse(url + path)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    conn.request(method, u.path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    out = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    conn.close()
    return out


def wait_idle(engine, runner, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.num_running == 0 and not engine.has_work() and not runner.streams:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.model
def test_models_health_and_unknown_route(server, client):
    url = server[0]
    assert [m.id for m in client.models.list().data] == ["SmolLM2-135M-Instruct"]
    status, _, text = raw(url.rsplit("/v1", 1)[0], "GET", "/health")
    assert status == 200 and json.loads(text)["status"] == "ok"
    status, _, text = raw(url, "GET", "/nothing-here")
    assert status == 404 and "error" in json.loads(text)
    with pytest.raises(openai.NotFoundError):
        client.get("/nothing-here", cast_to=object)


@pytest.mark.model
@pytest.mark.parametrize("preference, method, extra", [
    ("concise", "amulet", ()), ("uplifting", "la", (("ratio", 1.5),)), (None, "base", ()),
    ("like a pirate", "pref", ()),
])
def test_greedy_chat_equals_generate(client, reference, preference, method, extra):
    ref = reference(Q, preference, method, 8, extra)
    r = ask(client, Q, 8, preference, method, **dict(extra))
    assert r.choices[0].message.content == ref.text
    assert r.choices[0].finish_reason == ("length" if ref.finish_reason == "length" else "stop")
    assert r.usage.completion_tokens == len(ref.token_ids) and r.usage.prompt_tokens == ref.num_prompt_tokens
    assert r.model == "SmolLM2-135M-Instruct" and r.object == "chat.completion"


@pytest.mark.model
def test_streaming_chat_sse_format_and_text(server, client, reference):
    ref = reference(Q, "concise", "amulet", 8)
    chunks = list(client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": Q}], max_tokens=8, stream=True,
        stream_options={"include_usage": True}, extra_body={"preference": "concise", "method": "amulet"}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ref.text
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["length" if ref.finish_reason == "length" else "stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(ref.token_ids)
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    # the raw stream: SSE "data:" lines, [DONE] last
    status, headers, body = raw(server[0], "POST", "/chat/completions", chat_body(
        messages=[{"role": "user", "content": Q}], max_tokens=4, stream=True))
    events = [e for e in body.split("\n\n") if e]
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


@pytest.mark.model
def test_completions_endpoint_streaming_and_not(client, reference):
    ref = reference(Q, "concise", "amulet", 6)
    r = client.completions.create(model="m", prompt=Q, max_tokens=6, logprobs=0,
                                  extra_body={"preference": "concise"})
    assert r.choices[0].text == ref.text and r.object == "text_completion"
    lps = r.choices[0].logprobs.token_logprobs                 # every token but a final EOS
    assert len(lps) == len(ref.token_ids) - (ref.finish_reason == "eos")
    assert lps == pytest.approx(ref.logprobs[:len(lps)], abs=1e-4)
    s = client.completions.create(model="m", prompt=Q, max_tokens=6, stream=True,
                                  extra_body={"preference": "concise"})
    assert "".join(c.choices[0].text for c in s) == ref.text


@pytest.mark.model
def test_logprobs_and_stop(client, reference):
    ref = reference(Q, "concise", "amulet", 8)
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": Q}], max_tokens=8,
                                       logprobs=True, extra_body={"preference": "concise"})
    content = r.choices[0].logprobs.content
    assert [c.logprob for c in content] == pytest.approx(ref.logprobs[:len(content)], abs=1e-4)
    assert "".join(c.token for c in content) == ref.text
    stop = ref.text.split()[1]                       # a word inside the answer: the answer ends before it
    r = ask(client, Q, 8, "concise", "amulet", stop=[stop])
    assert r.choices[0].message.content == ref.text[:ref.text.index(stop)]
    assert r.choices[0].finish_reason == "stop"


@pytest.mark.model
def test_several_preferences_share_one_batch(server, client, reference):
    """Different preferences, methods and hyper-parameters at once: each answer is its own generate()'s, and the
    engine took fewer steps than the answers have tokens (they were decoded together)."""
    _, engine, runner = server
    jobs = [("concise", "amulet", ()), ("verbose", "amulet", (("T", 10), ("alpha", 1.0))),
            ("uplifting", "la", (("ratio", 1.0),)), (None, "base", ()), ("formal", "pref", ()),
            ("like a pirate", "amulet", (("weight", 3.0),))]
    refs = [reference(Q, p, m, 8, e) for p, m, e in jobs]
    assert wait_idle(engine, runner)
    steps0 = runner.steps
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        outs = list(pool.map(lambda j: ask(client, Q, 8, j[0], j[1], **dict(j[2])), jobs))
    for (p, m, _), ref, out in zip(jobs, refs, outs):
        assert out.choices[0].message.content == ref.text, (p, m)
    assert runner.steps - steps0 < sum(len(r.token_ids) for r in refs)
    assert len({r.text for r in refs}) > 2           # the preferences really steer differently


@pytest.mark.model
def test_seeded_sampling_is_batch_independent_and_n_uses_consecutive_seeds(client, reference):
    """A request's seed is its engine seed: the answer equals ``pyalign.generate(..., seed=[seed])`` (one seed per
    prompt, used as is) and does not change when other requests share the batch."""
    kw = dict(temperature=0.9, top_p=0.95, seed=1234)
    alone = ask(client, Q, 8, "concise", "amulet", **kw).choices[0].message.content
    ref = reference(Q, "concise", "amulet", 8, (("seed", (1234,)), ("temperature", 0.9), ("top_p", 0.95)))
    assert alone == ref.text
    with concurrent.futures.ThreadPoolExecutor(4) as pool:     # the same request among others
        crowd = list(pool.map(lambda q: ask(client, q, 8, "concise", "amulet", **kw).choices[0].message.content,
                              [Q, "Name a colour.", "What is 2+2?", "Say hello."]))
    assert crowd[0] == alone
    n = client.chat.completions.create(model="m", messages=[{"role": "user", "content": Q}], max_tokens=8, n=2,
                                       temperature=0.9, top_p=0.95, seed=1234, extra_body={"preference": "concise"})
    assert [c.index for c in n.choices] == [0, 1] and n.choices[0].message.content == alone
    second = ask(client, Q, 8, "concise", "amulet", **{**kw, "seed": 1235}).choices[0].message.content
    assert n.choices[1].message.content == second


BAD_BODIES = [
    (b"{not json", "body"),
    (chat_body(messages=[]), "messages"),
    (chat_body(method="telepathy"), "method"),
    (chat_body(preference="consise"), "preference"),
    (chat_body(preference="concise", T=0), "T"),
    (chat_body(preference="concise", lam=-1), "lam"),
    (chat_body(temperature=-1), "temperature"),
    (chat_body(top_p=2), "top_p"),
    (chat_body(max_tokens=-3), "max_tokens"),
    (chat_body(messages=[{"role": "user", "content": "word " * 9000}]), "messages"),    # longer than the context
    (chat_body(n=99), "n"),
    (chat_body(preferance="concise"), "preferance"),
]


@pytest.mark.model
def test_bad_input_is_400_naming_the_field_and_the_server_keeps_serving(server, client, reference):
    for body, param in BAD_BODIES:
        status, _, text = raw(server[0], "POST", "/chat/completions", body)
        err = json.loads(text)["error"]
        assert status == 400 and err["param"] == param and err["type"] == "invalid_request_error", (param, text)
    with pytest.raises(openai.BadRequestError) as e:        # what a client sees
        ask(client, Q, 4, "concise", "amulet", alpha=-2)
    assert e.value.body["param"] == "alpha" and "alpha" in e.value.message
    assert ask(client, Q, 4, "concise", "amulet").choices[0].message.content == reference(Q, "concise", "amulet",
                                                                                          4).text


@pytest.mark.model
def test_client_disconnect_frees_rows(server, client, reference):
    url, engine, runner = server
    assert wait_idle(engine, runner)
    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": Q}], max_tokens=400,
                                            stream=True, extra_body={"preference": "concise"})
    got = 0
    for chunk in stream:
        got += bool(chunk.choices and chunk.choices[0].delta.content)
        if got >= 2:
            break
    assert engine.num_running == 1
    stream.close()                                   # streaming client goes away
    assert wait_idle(engine, runner, 30), "the streamed request kept its rows after the client left"
    u = urllib.parse.urlparse(url)                   # non-streaming client gives up
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(chat_body(
        messages=[{"role": "user", "content": Q}], max_tokens=400, preference="concise")),
        headers={"Content-Type": "application/json"})
    deadline = time.monotonic() + 60
    while engine.num_running == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.num_running == 1
    conn.close()
    assert wait_idle(engine, runner, 30), "the request kept its rows after its client left"
    assert ask(client, Q, 4, "concise", "amulet").choices[0].message.content == reference(Q, "concise", "amulet",
                                                                                          4).text


@pytest.mark.model
def test_engine_fault_is_500_and_the_server_recovers(server, client, reference):
    _, engine, runner = server
    assert wait_idle(engine, runner)
    real = engine.step
    calls = []

    def broken():
        if not calls:
            calls.append(1)
            raise RuntimeError("injected fault")
        return real()
    engine.step = broken
    try:
        with pytest.raises(openai.InternalServerError) as e:
            ask(client, Q, 4, "concise", "amulet")
        assert "injected fault" in e.value.message
    finally:
        del engine.step                               # back to the class's method
    assert wait_idle(engine, runner, 30)
    assert ask(client, Q, 4, "concise", "amulet").choices[0].message.content == reference(Q, "concise", "amulet",
                                                                                          4).text


@pytest.mark.model
def test_full_queue_is_429_and_clears(model_tok, reference):
    from pyalign.engine.hf import HFEngine
    from pyalign.serve.app import create_app
    from pyalign.serve.background import serve_in_thread
    model, tok = model_tok
    engine = HFEngine(model, tok, max_batch=1, max_waiting=1)
    app = create_app(engine, tok, "small-queue")
    with serve_in_thread(app) as url:
        c = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=300)
        hold = []
        for _ in range(2):            # one running, one waiting: both hold their streams open
            s = c.chat.completions.create(model="m", messages=[{"role": "user", "content": Q}], max_tokens=300,
                                          stream=True, extra_body={"preference": "concise"})
            hold.append(s)
        with pytest.raises(openai.RateLimitError) as e:
            ask(c, Q, 4, "concise", "amulet")
        assert e.value.status_code == 429 and "retry" in e.value.message
        assert e.value.response.headers.get("retry-after") == "1"
        for s in hold:
            s.close()
        assert wait_idle(engine, app.state.runner, 30)
        assert ask(c, Q, 4, "concise", "amulet").choices[0].message.content == reference(Q, "concise", "amulet",
                                                                                         4).text


@pytest.mark.model
def test_load_32_clients_x_4_requests_complete_correct_unmixed(server, model_tok):
    """32 concurrent clients × 4 requests (mixed questions, preferences and methods): every answer is complete
    and equals the answer of its own (question, preference, method)."""
    import pyalign
    url, engine, runner = server
    questions = [f"Name one fact about the number {i}." for i in range(8)]
    kinds = [("concise", "amulet"), (None, "base"), ("uplifting", "la"), ("formal", "pref")]
    jobs = [(questions[(c + r) % 8], *kinds[(c * 4 + r) % 4]) for c in range(32) for r in range(4)]
    refs = {}
    for p, m in kinds:                                        # one batched generate() per kind
        for q, r in zip(questions, pyalign.generate(model_tok[0], model_tok[1], questions, preference=p, method=m,
                                                    max_new_tokens=3, system_prompt=SHORT_SYSTEM)):
            refs[(q, p, m)] = r
    assert {(q, p, m) for q, p, m in jobs} <= set(refs)
    assert len({r.text for r in refs.values()}) >= 8        # answers tell the questions apart

    def client_run(c):
        cl = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=300)
        out = []
        for q, p, m in jobs[c * 4:(c + 1) * 4]:
            r = ask(cl, q, 3, p, m, system_prompt=SHORT_SYSTEM)
            out.append(((q, p, m), r.choices[0].message.content, r.choices[0].finish_reason,
                        r.usage.completion_tokens))
        return out

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = [x for part in pool.map(client_run, range(32)) for x in part]
    wall = time.perf_counter() - t0
    assert len(results) == 128
    for key, text, finish, ntok in results:
        ref = refs[key]
        assert text == ref.text and ntok == len(ref.token_ids), key
        assert finish == ("length" if ref.finish_reason == "length" else "stop")
    assert wait_idle(engine, runner)
    print(f"\nload test: 128 requests from 32 clients in {wall:.1f} s")
    assert wall < 180, f"128 tiny requests took {wall:.0f} s"


@pytest.mark.model
def test_ctrl_c_stops_the_server_cleanly(tmp_path):
    """``python -m pyalign.serve`` on a tiny model directory: serves, then SIGINT mid-stream → exit 0 quickly."""
    from pyalign.models import load_tokenizer, tiny_random_model
    try:
        tok = load_tokenizer()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    model = tiny_random_model(vocab_size=len(tok), hidden=32, layers=2, heads=4, seed=0, max_positions=8192)
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYALIGN_BACKEND="torch")    # no C++ build in the subprocess
    proc = subprocess.Popen([sys.executable, "-m", "pyalign.serve", "--model", str(tmp_path / "tiny"), "--port", "0",
                             "--log-level", "info", "--shutdown-timeout", "0.5"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        port, deadline = None, time.monotonic() + 120
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            port = int(m.group(1)) if m else None
        assert port, "".join(lines)
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=60)
        r = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
        assert r.usage.completion_tokens >= 1
        stream = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=7000, stream=True)
        chunks = iter(stream)
        next(chunks)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        with pytest.raises(openai.APIError, match="shutting down"):     # the open answer is ended, not cut
            for _ in chunks:
                pass
        rc = proc.wait(timeout=30)
        lines.extend(proc.stdout.readlines())
        log = "".join(lines)
        assert rc == 0 and "pyalign serve: stopped" in log and "Traceback" not in log, log
        assert time.monotonic() - t0 < 20
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bench_serve_table():
    """bench/bench_serve.py: percentiles and the speedup column against max batch 1."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_serve", os.path.join(ROOT, "bench", "bench_serve.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.percentile([4, 1, 3, 2], 50) == 2.5 and bench.percentile([1, 2, 3, 4, 5], 95) == pytest.approx(4.8)
    row = dict(requests=8, tokens=96, wall_s=4.0, latency_p50_s=1.0, latency_p95_s=2.0, ttft_p50_s=0.1,
               ttft_p95_s=0.2, method="amulet", clients=8)
    rows = [dict(row, max_batch=16, tokens_per_s=30.0), dict(row, max_batch=1, tokens_per_s=10.0)]
    meta = dict(date="d", machine="m", model="x", max_tokens=12, command="python bench/bench_serve.py",
                load_avg_at_end=(1.0, 1.0, 1.0))
    table = bench.markdown(meta, rows)
    assert "| 16 | amulet | 8 | 8 | 96 | 30.0 | 1.00 | 2.00 | 0.10 | 0.20 | 3.00× |" in table
    assert "| 1 | amulet | 8 | 8 | 96 | 10.0 |" in table
