"""The ZenML step and materializer of the ZenML adapter (a module of their own: ZenML loads
steps and materializers by import path, and this module imports ZenML)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from zenml import step
from zenml.enums import ArtifactType
from zenml.materializers.base_materializer import BaseMaterializer

from reliability.adapters.zenml import StoreRef, run_step

__all__ = ["StoreRefMaterializer", "reliability_step"]


class StoreRefMaterializer(BaseMaterializer):  # type: ignore[misc]
    """Stores a :class:`StoreRef` as a small JSON file (the data stays in our store; no
    extra artifact metadata: each entry costs ZenML a store write per step)."""

    ASSOCIATED_TYPES: ClassVar[tuple[type, ...]] = (StoreRef,)
    ASSOCIATED_ARTIFACT_TYPE = ArtifactType.DATA

    def load(self, data_type: type[Any]) -> StoreRef:
        with self.artifact_store.open(self._path(), "r") as f:
            return StoreRef(json.load(f))

    def save(self, data: StoreRef) -> None:
        with self.artifact_store.open(self._path(), "w") as f:
            json.dump(dict(data), f)

    def _path(self) -> str:
        return f"{self.uri}/ref.json"


@step(enable_cache=False, output_materializers=StoreRefMaterializer)  # type: ignore[misc,untyped-decorator]
def reliability_step(bridge: str, step: str, params: dict[str, Any],
                     up1: StoreRef | None = None, up2: StoreRef | None = None,
                     up3: StoreRef | None = None, up4: StoreRef | None = None,
                     up5: StoreRef | None = None, up6: StoreRef | None = None) -> StoreRef:
    """One attempt of pipeline step ``step`` through the adapter's bridge ``bridge``."""
    return run_step(bridge, step, params, [up1, up2, up3, up4, up5, up6])
