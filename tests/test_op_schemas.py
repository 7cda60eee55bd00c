"""The op schemas are written twice and must agree: ``torch.ops.pyalign`` (Python: the public ops, dispatching
to a backend) and ``torch.ops.pyalign_C`` (C++: csrc/bindings.cpp, the kernels of the cpp and cuda backends).

Both are read from the dispatcher at run time (``torch.ops.<ns>.<op>.default._schema``), not from source text,
so the test holds wherever the Python schemas live. Compared per op: the op set, overload names, argument names,
types (optionality included; the printed form catches SymInt vs int), defaults, keyword-only markers, alias
annotations, return types and names."""
from __future__ import annotations

import pytest
import torch

import pyalign  # noqa: F401  (registers torch.ops.pyalign)
from pyalign.backends import _build

PY_NS, C_NS = "pyalign", "pyalign_C"


def _op_names(namespace: str) -> set[str]:
    prefix = namespace + "::"
    return {s.name[len(prefix):] for s in torch._C._jit_get_all_schemas() if s.name.startswith(prefix)}


def _schema(namespace: str, op: str) -> torch.FunctionSchema:
    return getattr(getattr(torch.ops, namespace), op).default._schema


def _arg(a) -> dict:
    return {"name": a.name, "type": str(a.type), "default": repr(a.default_value), "kwarg_only": a.kwarg_only,
            "alias": str(a.alias_info) if a.alias_info is not None else None}


def schema_differences(py: torch.FunctionSchema, c: torch.FunctionSchema) -> list[str]:
    """Human-readable differences between two schemas of one op (namespaces ignored); [] if they agree."""
    diffs = []
    name_py, name_c = py.name.split("::")[-1], c.name.split("::")[-1]
    if name_py != name_c:
        diffs.append(f"op name: {name_py!r} vs {name_c!r}")
    if py.overload_name != c.overload_name:
        diffs.append(f"overload name: {py.overload_name!r} vs {c.overload_name!r}")
    for kind, xs, ys in (("argument", py.arguments, c.arguments), ("return", py.returns, c.returns)):
        if len(xs) != len(ys):
            diffs.append(f"{kind} count: {len(xs)} vs {len(ys)}")
        for i, (x, y) in enumerate(zip(xs, ys)):
            dx, dy = _arg(x), _arg(y)
            for field in dx:
                if dx[field] != dy[field]:
                    diffs.append(f"{kind} {i} ({dx['name'] or y.name or '-'}) {field}: {dx[field]!r} vs {dy[field]!r}")
    if py.is_mutable != c.is_mutable:
        diffs.append(f"mutability: {py.is_mutable} vs {c.is_mutable}")
    printed_py, printed_c = str(py).split("::", 1)[-1], str(c).split("::", 1)[-1]
    if not diffs and printed_py != printed_c:  # what the fields above do not show (e.g. SymInt prints as int type)
        diffs.append(f"printed form: {printed_py!r} vs {printed_c!r}")
    return diffs


@pytest.fixture(scope="module")
def c_ops_loaded():
    _build.load()  # registers torch.ops.pyalign_C (a failed build fails here, loudly)


def test_both_namespaces_define_the_same_ops(c_ops_loaded):
    py_ops, c_ops = _op_names(PY_NS), _op_names(C_NS)
    assert {"guided_sample", "guided_logprobs", "topk_candidates", "topk_rescore", "rescore_candidates"} <= py_ops
    assert py_ops - c_ops == set(), f"ops without a C++ schema (add them to csrc/bindings.cpp): {py_ops - c_ops}"
    assert c_ops - py_ops == set(), f"C++ ops without a Python schema: {c_ops - py_ops}"


def test_every_schema_agrees(c_ops_loaded):
    report = {}
    for op in sorted(_op_names(PY_NS) & _op_names(C_NS)):
        py, c = _schema(PY_NS, op), _schema(C_NS, op)
        diffs = schema_differences(py, c)
        if diffs:
            report[op] = diffs + [f"python: {py}", f"c++:    {c}"]
    assert not report, "schemas of torch.ops.pyalign and torch.ops.pyalign_C differ:\n" + "\n".join(
        f"  {op}: " + "\n    ".join(d) for op, d in report.items())


BASE = "x::op(Tensor a, Tensor? b, int k, *, float s=1.0) -> (Tensor, Tensor)"


@pytest.mark.parametrize("variant,expected", [
    ("x::op(Tensor a, Tensor? c, int k, *, float s=1.0) -> (Tensor, Tensor)", "argument 1 (b) name"),
    ("x::op(Tensor a, Tensor b, int k, *, float s=1.0) -> (Tensor, Tensor)", "argument 1 (b) type"),
    ("x::op(Tensor a, Tensor? b, SymInt k, *, float s=1.0) -> (Tensor, Tensor)", "printed form"),
    ("x::op(Tensor a, Tensor? b, int k, *, float s=2.0) -> (Tensor, Tensor)", "argument 3 (s) default"),
    ("x::op(Tensor a, Tensor? b, int k, float s=1.0) -> (Tensor, Tensor)", "argument 3 (s) kwarg_only"),
    ("x::op(Tensor a, Tensor? b, int k) -> (Tensor, Tensor)", "argument count"),
    ("x::op(Tensor a, Tensor? b, int k, *, float s=1.0) -> Tensor", "return count"),
    ("x::op(Tensor a, Tensor? b, int k, *, float s=1.0) -> (Tensor, int)", "return 1 (-) type"),
    ("x::op(Tensor(a!) a, Tensor? b, int k, *, float s=1.0) -> (Tensor, Tensor)", "argument 0 (a) alias"),
    ("x::op2(Tensor a, Tensor? b, int k, *, float s=1.0) -> (Tensor, Tensor)", "op name"),
    ("x::op.v2(Tensor a, Tensor? b, int k, *, float s=1.0) -> (Tensor, Tensor)", "overload name"),
])
def test_comparison_catches_each_kind_of_difference(variant, expected):
    base = torch._C.parse_schema(BASE)
    assert schema_differences(base, torch._C.parse_schema(BASE.replace("x::", "y::"))) == []
    diffs = schema_differences(base, torch._C.parse_schema(variant))
    assert any(d.startswith(expected) for d in diffs), diffs
