"""Least-squares cost model: server CPU seconds per poll from what a poll does.

    cpu_per_poll = a + b * scanned_MB + c * sent_MB + d * [TLS] + e * [TLS] * sent_MB
                   (+ mbox terms: a_mbox + b_mbox * scanned_MB + f * rewritten_MB)

(load-workloads.md §3: a = connect + auth, b = scanning/indexing the
mailbox, c = sending, d = the TLS handshake, e = TLS bulk cipher, f = mbox
rewrite on DELE/QUIT.)  Sizes are in MB (10^6 octets) so coefficients read as
seconds per MB.  The backend terms are interactions: a maildir cell has
them all zero, so one fit covers both stores, and a grid with a single
backend simply drops them.  Terms whose column is all zero (no TLS cells,
no delete cells ...) or a copy of an earlier column (an mbox-only grid:
``a_mbox`` equals ``a``) are dropped before fitting; numpy's lstsq does the
fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MB = 1_000_000

TERMS: tuple[str, ...] = (
    "a",
    "b_scan",
    "c_sent",
    "d_tls",
    "e_tls_sent",
    "a_mbox",
    "b_mbox_scan",
    "f_rewrite",
)
UNITS: dict[str, str] = {
    "a": "s per poll",
    "b_scan": "s per MB of mailbox scanned",
    "c_sent": "s per MB sent",
    "d_tls": "s per TLS poll (handshake)",
    "e_tls_sent": "s per MB sent over TLS (extra)",
    "a_mbox": "s per poll on mbox (extra)",
    "b_mbox_scan": "s per MB scanned on mbox (extra)",
    "f_rewrite": "s per MB rewritten on mbox DELE/QUIT",
}
FORMULA = (
    "cpu_per_poll_s = a + b_scan*scanned_MB + c_sent*sent_MB + d_tls*[TLS] + e_tls_sent*[TLS]*sent_MB"
    " + a_mbox*[mbox] + b_mbox_scan*[mbox]*scanned_MB + f_rewrite*[mbox]*rewritten_MB"
)


@dataclass(frozen=True)
class PollShape:
    """What one poll does, the model's inputs."""

    scanned_bytes: float
    sent_bytes: float
    tls: bool
    backend: str = "maildir"
    rewritten_bytes: float = 0.0  # mbox delete: the file is rewritten after DELE


def features(p: PollShape) -> dict[str, float]:
    scanned, sent = p.scanned_bytes / MB, p.sent_bytes / MB
    tls = 1.0 if p.tls else 0.0
    mbox = 1.0 if p.backend == "mbox" else 0.0
    return {
        "a": 1.0,
        "b_scan": scanned,
        "c_sent": sent,
        "d_tls": tls,
        "e_tls_sent": tls * sent,
        "a_mbox": mbox,
        "b_mbox_scan": mbox * scanned,
        "f_rewrite": mbox * p.rewritten_bytes / MB,
    }


@dataclass
class Model:
    terms: list[str]
    coefficients: dict[str, float]
    r2: float
    rmse_s: float
    residuals: dict[str, float]
    rank_deficient: bool = False
    weighting: str = "none"

    def predict(self, p: PollShape) -> float:
        f = features(p)
        return sum(self.coefficients.get(t, 0.0) * f[t] for t in self.terms)

    def to_json(self) -> dict:
        return {
            "formula": FORMULA,
            "terms": self.terms,
            "units": {t: UNITS[t] for t in self.terms},
            "coefficients": {t: self.coefficients[t] for t in self.terms},
            "r2": self.r2,
            "rmse_s": self.rmse_s,
            "n_cells": len(self.residuals),
            "residuals": self.residuals,
            "rank_deficient": self.rank_deficient,
            "weighting": self.weighting,
        }


class FitError(ValueError):
    """Not enough data to fit."""


def fit(samples: dict[str, tuple[PollShape, float]], relative: bool = True) -> Model:
    """Fit the model on ``cell id -> (poll shape, measured CPU s per poll)``,
    by least squares on relative residuals (``relative``) or absolute ones.
    R², RMSE and the residuals are always reported in seconds.

    Raises:
        FitError: fewer cells than terms left after dropping empty columns.
    """
    ids = sorted(samples)
    rows = [features(samples[i][0]) for i in ids]
    y = np.array([samples[i][1] for i in ids], dtype=float)
    terms: list[str] = []
    for t in TERMS:  # drop empty columns and copies (mbox-only grid: a_mbox == a)
        column = [r[t] for r in rows]
        if any(abs(v) > 0 for v in column) and not any(
            np.allclose(column, [r[k] for r in rows]) for k in terms
        ):
            terms.append(t)
    x = np.array([[r[t] for t in terms] for r in rows], dtype=float)
    if len(ids) < len(terms):
        raise FitError(f"{len(ids)} cells cannot fit {len(terms)} terms ({', '.join(terms)})")
    # Scale columns so lstsq's rank test is not fooled by MB vs 0/1 units.
    scale = np.where(np.abs(x).max(axis=0) > 0, np.abs(x).max(axis=0), 1.0)
    # Relative weighting: a cell's CPU noise grows with its cost (the CV is
    # about constant), so minimise relative residuals; otherwise the few
    # expensive cells decide every coefficient and the fixed per-poll terms
    # (the TLS handshake) drown in their noise.
    w = 1.0 / np.where(y > 0, y, max(float(y[y > 0].min(initial=1.0)), 1e-9)) if relative else np.ones_like(y)
    solution, _res, rank, _sv = np.linalg.lstsq((x / scale) * w[:, None], y * w, rcond=None)
    beta = solution / scale
    predicted = x @ beta
    residuals = y - predicted
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((residuals**2).sum()) / total if total > 0 else 1.0
    return Model(
        terms=terms,
        coefficients={t: float(b) for t, b in zip(terms, beta, strict=True)},
        r2=r2,
        rmse_s=float(np.sqrt((residuals**2).mean())),
        residuals={i: float(r) for i, r in zip(ids, residuals, strict=True)},
        rank_deficient=int(rank) < len(terms),
        weighting="relative (1/measured)" if relative else "none",
    )


def quality_note(model: Model, held_out_error_pct: float | None) -> str:
    """An honest one-line reading of the fit."""
    notes = []
    if model.rank_deficient:
        notes.append(
            "the grid does not separate every term (rank-deficient; some coefficients are not identified)"
        )
    if model.r2 < 0.8:
        notes.append(f"poor fit (R^2 {model.r2:.2f}): the terms do not explain the measured CPU well")
    if held_out_error_pct is not None and abs(held_out_error_pct) > 25:
        notes.append(f"held-out cell off by {held_out_error_pct:+.0f} %: predictions are rough")
    negative = [t for t in model.terms if t != "a" and model.coefficients[t] < 0]
    if negative:
        notes.append(f"negative coefficients ({', '.join(negative)}): noise larger than those effects")
    return "; ".join(notes) if notes else f"good fit (R^2 {model.r2:.3f})"
