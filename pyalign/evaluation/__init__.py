"""Evaluation: metrics of the papers, a resumable runner (``pyalign eval``) and reports (``pyalign report``).

    from pyalign.evaluation import EvalConfig, run_evaluation, write_report
    run_evaluation(EvalConfig(data=["helpsteer"], preferences=["concise", "verbose"], methods=["base", "amulet"],
                              limit=8, max_new_tokens=96, out="runs/x.jsonl"))
    write_report("runs/x.jsonl", "runs/x_report")
"""
from .data import Question, load_questions, parse_preferences
from .metrics import (degeneration_flags, distinct_n, diversity, echo_score, rep_n, sentiment, text_metrics,
                      token_count, word_count)
from .report import write_report
from .runner import EvalConfig, parse_grid, read_jsonl, run_evaluation

__all__ = ["EvalConfig", "Question", "degeneration_flags", "distinct_n", "diversity", "echo_score", "load_questions",
           "parse_grid", "parse_preferences", "read_jsonl", "rep_n", "run_evaluation", "sentiment", "text_metrics",
           "token_count", "word_count", "write_report"]
