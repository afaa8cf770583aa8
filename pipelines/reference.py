"""The reference ML training pipeline: ingest -> validate -> featurize -> train -> evaluate
-> package, on scikit-learn's bundled wine data.

Deterministic for a given seed, so a run interrupted by faults and resumed produces outputs
byte-identical to a clean run. ``ingest`` reads from an HTTP data service when
``params.source`` is a URL (so network faults are real), or from the bundled data set.
"""

from __future__ import annotations

import io
import json
import pickle
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field

from reliability import Pipeline, Retry, StepContext

FEATURES = [
    "alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols",
    "flavanoids", "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue",
    "od280_od315_of_diluted_wines", "proline",
]


class ReferenceParams(BaseModel):
    """Parameters of the reference pipeline (all have embedded defaults)."""

    source: str = Field("builtin", description="'builtin' or an http:// URL serving wine.csv")
    seed: int = 7
    test_fraction: float = Field(0.25, gt=0, lt=1)
    regularization: float = Field(1.0, gt=0)
    min_accuracy: float = Field(0.9, ge=0, le=1)
    fetch_timeout: float = Field(5.0, gt=0)


pipeline = Pipeline("reference", params=ReferenceParams,
                    description="Wine-quality classifier: the toolkit's reference pipeline")


class QualityGateFailed(RuntimeError):
    """The trained model is below the accuracy floor."""


@pipeline.step(retry=Retry(attempts=4, backoff=0.2, retry_on=(OSError,)), timeout=60)
def ingest(ctx: StepContext, params: ReferenceParams) -> pd.DataFrame:
    """Fetch raw measurements from the data service (or the bundled copy)."""
    if params.source == "builtin":
        from pipelines.wine_service import wine_csv

        raw = wine_csv()
    else:
        if not params.source.startswith(("http://", "https://")):
            raise ValueError(f"source {params.source!r} must be 'builtin' or an http(s) URL")
        with urllib.request.urlopen(params.source, timeout=params.fetch_timeout) as resp:  # noqa: S310
            raw = resp.read()
    frame = pd.read_csv(io.BytesIO(raw))
    ctx.log.info("ingested %d rows", len(frame))
    return frame


@pipeline.step(retry=Retry(attempts=2), timeout=60)
def validate(ingest: pd.DataFrame) -> pd.DataFrame:
    """Normalize types and give every sample a stable id."""
    frame = ingest.copy()
    frame[FEATURES] = frame[FEATURES].astype("float64")
    frame["target"] = frame["target"].astype("int64")
    frame.insert(0, "sample_id", range(len(frame)))
    frame["sample_id"] = frame["sample_id"].astype("int64")
    return frame


@pipeline.step(retry=Retry(attempts=2), timeout=60)
def featurize(validate: pd.DataFrame, params: ReferenceParams) -> pd.DataFrame:
    """Standardize features and assign a deterministic train/test split."""
    import numpy as np

    frame = validate[["sample_id", *FEATURES, "target"]].copy()
    rng = np.random.default_rng(params.seed)
    is_test = rng.random(len(frame)) < params.test_fraction
    train = frame.loc[~is_test, FEATURES]
    spread = train.std(ddof=0).fillna(0.0)
    spread[spread == 0] = 1.0  # a constant feature stays finite (centered at zero)
    frame[FEATURES] = (frame[FEATURES] - train.mean().fillna(0.0)) / spread
    frame["split"] = np.where(is_test, "test", "train")
    return frame


@pipeline.step(retry=Retry(attempts=3, backoff=0.2), timeout=120)
def train(featurize: pd.DataFrame, params: ReferenceParams) -> Any:
    """Fit a multinomial logistic regression on the training split."""
    from sklearn.linear_model import LogisticRegression

    rows = featurize[featurize["split"] == "train"]
    model = LogisticRegression(C=params.regularization, max_iter=500, random_state=params.seed)
    model.fit(rows[FEATURES].to_numpy(), rows["target"].to_numpy())
    return model


@pipeline.step(retry=Retry(attempts=2), timeout=60)
def evaluate(train: Any, featurize: pd.DataFrame, params: ReferenceParams) -> dict[str, Any]:
    """Score the model on the held-out split; the quality gate stops a bad model here."""
    from sklearn.metrics import accuracy_score, f1_score

    rows = featurize[featurize["split"] == "test"]
    predicted = train.predict(rows[FEATURES].to_numpy())
    metrics = {
        "accuracy": round(float(accuracy_score(rows["target"], predicted)), 6),
        "f1_macro": round(float(f1_score(rows["target"], predicted, average="macro")), 6),
        "test_rows": len(rows),
    }
    if metrics["accuracy"] < params.min_accuracy:
        raise QualityGateFailed(
            f"accuracy {metrics['accuracy']:.3f} is below the gate {params.min_accuracy:.3f}")
    return metrics


@pipeline.step(retry=Retry(attempts=2), timeout=60)
def package(ctx: StepContext, train: Any, evaluate: dict[str, Any]) -> Path:
    """Bundle model and metrics into a reproducible zip (fixed timestamps, sorted entries)."""
    bundle = ctx.staging_dir / f"{ctx.step}.{ctx.attempt}.model.zip"
    manifest = {"pipeline": ctx.pipeline, "features": FEATURES, "metrics": evaluate,
                "model": type(train).__name__}
    # The model exactly as `train` committed it: pickling the loaded model again can give
    # other bytes in another worker process, and the bundle must not change with that.
    committed = ctx.input_files.get("train")
    entries = {
        "manifest.json": json.dumps(manifest, sort_keys=True, indent=2).encode(),
        "model.pkl": (committed.read_bytes() if committed is not None
                      else pickle.dumps(train, protocol=5)),
    }
    with zipfile.ZipFile(bundle, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, entries[name])
    return bundle
