"""The model registry: trained artifacts on disk, each beside a card, trusted only when
the history database holds its digest.

Layout::

    <root>/<pipeline>/<model id>/model.joblib   the pickled object (joblib)
    <root>/<pipeline>/<model id>/card.json      what it is and how to check it
    <root>/<pipeline>/current                   the live model id (one line)

A model id is the UTC save time plus the first 8 hex digits of the file's sha256
(``20261126T130512Z-1a2b3c4d``; ``.2``, ``.3``... is appended in the rare case of a
clash), so ids sort by age. The card holds what the trainer passes, by convention::

    {"kind": "hgb-log", "features": [...], "quantile": 0.95, "notes": "...",
     "training": {"rows": 28476, "start": "1996-09-30T12:10:27+00:00", "end": "..."},
     "metrics": {"model": {"mae_s": ..., "mdape": ...}, "last2": {...}, ...}}

plus what the registry adds: ``pipeline``, ``model_id``, ``created_at``, ``file``,
``size``, ``sha256`` and ``versions`` (python, sklearn, numpy, pandas, joblib).

``planner train`` also writes what serves and how good its bound was on the holdout::

    {"serving": {"method": "model" | "last2" | "last10", "reason": "model worse than ..."},
     "bound_source": "last2",   # whose holdout bound the saved model uses
     "bound_ok": true,          # false: its overrun was > 3x the target (null: no holdout)
     "bound_overrun": 0.048, "bound_ratio": 1.9, "bound_target": 0.05,
     "bound_note": null}        # why another method's bound serves, or that none met it

:func:`bound_warning` turns a card into the one-line warning planning shows (or None).

Trust. joblib files are pickles: loading one runs code. The card cannot vouch for the file
beside it (whoever can replace the file can rewrite the card), so every saved model's
digest is also recorded in a :class:`ModelLedger`, the ``trained_models`` table of the
history database (:class:`~planner.history.HistoryStore` implements it), which a writer
of the models folder cannot change. :meth:`Registry.save` records the digest once the
folder is in place, and removes the folder again when recording fails, so no unrecorded
model stays. :meth:`Registry.load` checks, BEFORE unpickling, that the card is valid JSON,
the file exists, its sha256 equals the card's (a cheap first error for a truncated or
damaged file) AND the one recorded in the ledger for (pipeline, model id), and that the
versions of scikit-learn, numpy and pandas match the card's (major.minor). Any failure
raises :class:`~planner.errors.ModelError` with a one-line reason and ``joblib.load`` is
never called (:meth:`Registry.try_load` returns the reason as a warning instead, for a
predictor that then falls back to the baselines). A model folder copied from elsewhere is
therefore refused until it is retrained here (``planner train``).

Without a ledger (``ledger=None``) the registry still lists models and reads cards (no
unpickling is involved), but refuses to save (the new model could never be trusted),
promote, verify or load (there is nothing to check the file against).

``current`` and each save are written atomically (a temporary file or folder, then
``os.replace``), so a reader never sees half a model. ``current`` lives in the models
folder; promotion also stamps ``promoted_at`` in the ledger, for the record.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from planner.clock import SYSTEM_CLOCK, Clock
from planner.errors import ModelError, StoreError

__all__ = [
    "CARD_FILE",
    "CHECKED_LIBRARIES",
    "CURRENT_FILE",
    "MODEL_FILE",
    "LoadedModel",
    "ModelLedger",
    "Registry",
    "bound_warning",
    "library_versions",
]

MODEL_FILE = "model.joblib"
CARD_FILE = "card.json"
CURRENT_FILE = "current"
#: Libraries whose major.minor version must match the card's before a model is loaded.
CHECKED_LIBRARIES = ("sklearn", "numpy", "pandas")

_DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "numpy": "numpy",
    "pandas": "pandas",
    "joblib": "joblib",
}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]*$")
_HASH_CHUNK = 1 << 20


def library_versions() -> dict[str, str]:
    """The versions of python and the libraries a pickled model depends on."""
    versions = {"python": platform.python_version()}
    for key, dist in _DISTRIBUTIONS.items():
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = "absent"
    return versions


class ModelLedger(Protocol):
    """Where saved models' digests are recorded, out of reach of the models folder's
    writers (implemented by :class:`~planner.history.HistoryStore`)."""

    @property
    def url(self) -> str:
        """Where the ledger lives, password hidden (for messages)."""
        ...

    def record_model(
        self,
        pipeline: str,
        model_id: str,
        sha256: str,
        created_at: datetime,
        *,
        size: int | None = None,
        kind: str | None = None,
    ) -> None:
        """Record a saved model's digest; never replaces another digest (raises)."""
        ...

    def model_digest(self, pipeline: str, model_id: str) -> str | None:
        """The recorded sha256 of a model, ``None`` when it was never recorded."""
        ...

    def record_promotion(self, pipeline: str, model_id: str, promoted_at: datetime) -> bool:
        """Stamp when a recorded model was made current; False when it is not recorded."""
        ...


@dataclass(frozen=True)
class LoadedModel:
    """A model that passed every check, with its card."""

    obj: Any
    card: dict[str, Any]
    model_id: str


class Registry:
    """Models saved under ``root``, one folder per pipeline (see the module docstring)."""

    def __init__(
        self, root: Path, *, ledger: ModelLedger | None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.root = Path(root)
        self.ledger = ledger
        self._clock = clock

    def _need_ledger(self, where: Path, action: str) -> ModelLedger:
        if self.ledger is None:
            raise ModelError(
                str(where),
                f"no history to check the model against: cannot {action} a model "
                "without the history database (give --db / $PLANNER_DB)",
            )
        return self.ledger

    # -- paths ---------------------------------------------------------------------------

    def pipeline_dir(self, pipeline: str) -> Path:
        return self.root / _checked_name(pipeline, "pipeline")

    def model_dir(self, pipeline: str, model_id: str) -> Path:
        return self.pipeline_dir(pipeline) / _checked_name(model_id, "model id")

    # -- writing -------------------------------------------------------------------------

    def save(self, pipeline: str, obj: Any, card: dict[str, Any]) -> str:
        """Dump ``obj`` with joblib beside its card, record its digest in the ledger;
        returns the new model id. When recording fails the folder is removed again.

        The model is not made current: call :meth:`promote` for that."""
        import joblib

        folder = self.pipeline_dir(pipeline)
        ledger = self._need_ledger(folder, "save")
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=folder))
        try:
            model_path = staging / MODEL_FILE
            joblib.dump(obj, model_path)
            digest = _sha256(model_path)
            created = self._clock.now()
            full = {
                **card,
                "pipeline": pipeline,
                "created_at": created.isoformat(),
                "file": MODEL_FILE,
                "size": model_path.stat().st_size,
                "sha256": digest,
                "versions": library_versions(),
            }
            model_id = self._free_id(folder, f"{created:%Y%m%dT%H%M%S}Z-{digest[:8]}")
            full["model_id"] = model_id
            (staging / CARD_FILE).write_text(
                json.dumps(full, indent=2, sort_keys=True, default=_json_default) + "\n",
                encoding="utf-8",
            )
            os.replace(staging, folder / model_id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            kind = card.get("kind")
            ledger.record_model(
                pipeline,
                model_id,
                digest,
                created,
                size=int(full["size"]),
                kind=str(kind)[:64] if kind is not None else None,
            )
        except BaseException:
            shutil.rmtree(folder / model_id, ignore_errors=True)
            raise
        return model_id

    @staticmethod
    def _free_id(folder: Path, base: str) -> str:
        """``base``, or ``base.2``, ``base.3``... when a model of that id exists already."""
        candidate, n = base, 1
        while (folder / candidate).exists():
            n += 1
            candidate = f"{base}.{n}"
        return candidate

    def promote(self, pipeline: str, model_id: str) -> None:
        """Make ``model_id`` the live model of ``pipeline`` (atomic replace of ``current``);
        it must be recorded in the ledger, which then notes when it was promoted."""
        folder = self.model_dir(pipeline, model_id)
        ledger = self._need_ledger(folder, "promote")
        if not (folder / CARD_FILE).is_file():
            raise ModelError(str(folder), "no such model (card.json missing)")
        if ledger.model_digest(pipeline, model_id) is None:
            raise ModelError(str(folder), self._unrecorded())
        _write_atomic(self.pipeline_dir(pipeline) / CURRENT_FILE, model_id + "\n")
        ledger.record_promotion(pipeline, model_id, self._clock.now())

    def _unrecorded(self) -> str:
        where = self.ledger.url if self.ledger is not None else "(none)"
        return (
            f"digest not recorded in the history {where} (trained elsewhere or folder "
            "tampered): not trusted, retrain with planner train"
        )

    # -- reading -------------------------------------------------------------------------

    def current_id(self, pipeline: str) -> str | None:
        """The live model id of ``pipeline``, ``None`` when none was promoted."""
        path = self.pipeline_dir(pipeline) / CURRENT_FILE
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelError(str(path), f"cannot read: {exc}") from None
        if not text:
            return None
        return _checked_name(text, "model id in current")

    def card(self, pipeline: str, model_id: str) -> dict[str, Any]:
        """The card of a model (ModelError when missing or not a JSON object)."""
        path = self.model_dir(pipeline, model_id) / CARD_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(str(path), "card missing") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(str(path), f"card is not valid JSON: {exc}") from None
        except OSError as exc:
            raise ModelError(str(path), f"cannot read card: {exc.strerror or exc}") from None
        if not isinstance(data, dict):
            raise ModelError(str(path), "card is not a JSON object")
        return data

    def verify(self, pipeline: str, model_id: str) -> dict[str, Any]:
        """Every check :meth:`load` makes before unpickling; returns the card."""
        ledger = self._need_ledger(self.model_dir(pipeline, model_id), "load or verify")
        card = self.card(pipeline, model_id)
        path = self.model_dir(pipeline, model_id) / str(card.get("file") or MODEL_FILE)
        if path.parent != self.model_dir(pipeline, model_id):
            raise ModelError(str(path), "card names a file outside its model folder")
        expected = card.get("sha256")
        if not isinstance(expected, str) or not re.fullmatch(r"[0-9a-f]{64}", expected):
            raise ModelError(str(path), "card has no valid sha256")
        if not path.is_file():
            raise ModelError(str(path), "model file missing")
        actual = _sha256(path)
        if actual != expected:
            raise ModelError(
                str(path),
                f"sha256 {actual[:12]}... does not match the card's {expected[:12]}... "
                "(file changed or truncated)",
            )
        try:
            recorded = ledger.model_digest(pipeline, model_id)
        except StoreError as exc:
            raise ModelError(str(path), f"cannot read the recorded digest: {exc}") from None
        if recorded is None:
            raise ModelError(str(path), self._unrecorded())
        if recorded != actual:
            raise ModelError(
                str(path),
                f"sha256 {actual[:12]}... differs from the digest recorded in the history "
                f"{ledger.url} ({recorded[:12]}...): folder tampered, not trusted; retrain "
                "with planner train",
            )
        mismatch = _version_mismatch(card.get("versions"), library_versions())
        if mismatch:
            raise ModelError(str(path), mismatch)
        return card

    def load(self, pipeline: str, model_id: str | None = None) -> LoadedModel:
        """Load a model (the current one when ``model_id`` is None) after :meth:`verify`."""
        if model_id is None:
            model_id = self.current_id(pipeline)
            if model_id is None:
                where = str(self.pipeline_dir(pipeline) / CURRENT_FILE)
                raise ModelError(where, f"no current model for pipeline {pipeline!r}")
        card = self.verify(pipeline, model_id)
        path = self.model_dir(pipeline, model_id) / str(card.get("file") or MODEL_FILE)
        import joblib

        try:
            obj = joblib.load(path)
        except Exception as exc:
            raise ModelError(str(path), f"cannot unpickle: {type(exc).__name__}: {exc}") from None
        return LoadedModel(obj=obj, card=card, model_id=model_id)

    def try_load(
        self, pipeline: str, model_id: str | None = None
    ) -> tuple[LoadedModel | None, str | None]:
        """Like :meth:`load`, but never raises: ``(model, None)``, ``(None, None)`` when
        there is no current model, or ``(None, warning)`` when one exists but is refused
        (the one-line ``<where>: <what>`` of the :class:`ModelError`)."""
        try:
            if model_id is None and self.current_id(pipeline) is None:
                return None, None
            return self.load(pipeline, model_id), None
        except ModelError as exc:
            return None, str(exc)

    def list(self, pipeline: str | None = None) -> builtins.list[dict[str, Any]]:
        """Every model (of one pipeline or all), oldest first per pipeline: the card plus
        ``pipeline``, ``id`` and ``current``; an unreadable card gives ``error``."""
        if pipeline is not None:
            pipelines = [pipeline]
        elif self.root.is_dir():
            pipelines = sorted(
                p.name for p in self.root.iterdir() if p.is_dir() and _SAFE_NAME.match(p.name)
            )
        else:
            pipelines = []
        entries: builtins.list[dict[str, Any]] = []
        for name in pipelines:
            folder = self.pipeline_dir(name)
            if not folder.is_dir():
                continue
            try:
                current = self.current_id(name)
            except ModelError:
                current = None
            for model in sorted(p for p in folder.iterdir() if p.is_dir()):
                if not _SAFE_NAME.match(model.name):
                    continue  # staging folders of saves in progress
                try:
                    entry: dict[str, Any] = dict(self.card(name, model.name))
                except ModelError as exc:
                    entry = {"error": exc.what}
                entry.update(pipeline=name, id=model.name, current=model.name == current)
                entries.append(entry)
        return entries


def _checked_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise ModelError(what, f"{name!r} is not a valid name (letters, digits, . _ - + @)")
    return name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(re.split(r"[.+]", version)[:2])


def _version_mismatch(saved: Any, running: dict[str, str]) -> str | None:
    if not isinstance(saved, dict):
        return "card has no library versions"
    for library in CHECKED_LIBRARIES:
        was = saved.get(library)
        if not isinstance(was, str):
            return f"card has no {library} version"
        now = running.get(library, "absent")
        if _major_minor(was) != _major_minor(now):
            return f"saved with {library} {was}, running {now}: retrain the model"
    return None


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def bound_warning(card: Mapping[str, Any]) -> str | None:
    """One line for the predictor, ``plan`` and ``run`` when the live model's bound missed
    its target on the holdout (``bound_ok`` false in its card), else None (also
    ``planner.learning.training.bound_warning``; here it imports nothing heavy).

    The card's ``bound_overrun`` is the holdout overrun of the bound that serves, its
    ``bound_target`` the target (``1 - quantile``) and ``bound_source`` the method whose
    bound it is; cards written before these fields existed give None."""
    if card.get("bound_ok") is not False:
        return None
    source = card.get("bound_source") or "model"
    overrun = card.get("bound_overrun")
    target = card.get("bound_target")
    ratio = card.get("bound_ratio")
    figures = []
    if isinstance(overrun, int | float):
        figures.append(f"overran {float(overrun) * 100:.1f} % of the holdout")
    if isinstance(target, int | float):
        figures.append(f"target {float(target) * 100:.1f} %")
    if isinstance(ratio, int | float):
        figures.append(f"bound/actual {float(ratio):.2f}")
    where = f" ({', '.join(figures)})" if figures else ""
    model = card.get("model_id")
    label = f"model {model}" if model else "the live model"
    return (
        f"{label}: no calibrated upper bound: {source}'s bound missed its target{where}, and "
        "no other did better; bounds are indicative only (retrain as history grows)"
    )
