"""The layout document a node agent reports, and reads back as geometry.

One JSON document per node, the body the agent POSTs to ``<control-plane>/mig/nodes/{node}``
and the file ``slotwise mig show`` and ``slotwise mig plan --layout`` read::

    {"node": "gpu-a1",
     "gpus": [{"index": 0, "product": "NVIDIA-A100-SXM4-80GB", "mig_enabled": true,
               "instances": [{"profile": "3g.40gb", "start": 4, "size": 4, "in_use": true}]}]}

Validation goes as far as the catalog knows: the product must be a MIG-capable model, every
instance a profile of it, at a valid start, with the profile's size, and the layout valid.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mig.catalog import CatalogError, model_for_product
from mig.geometry import Instance, Layout


class InstanceReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: str = Field(min_length=1)
    start: int = Field(ge=0)
    size: int = Field(ge=1)
    in_use: bool = False


class GpuReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: int = Field(ge=0)
    product: str = Field(min_length=1)
    mig_enabled: bool
    instances: list[InstanceReport] = []

    @model_validator(mode="after")
    def _geometry(self) -> GpuReport:
        if self.instances and not self.mig_enabled:
            raise ValueError(f"GPU {self.index}: instances reported while MIG mode is disabled")
        self.layout()  # raises ValueError naming what is wrong
        return self

    def layout(self) -> Layout:
        """This GPU's layout; a GPU with MIG disabled is an empty layout (mig-manager enables MIG
        when it applies a config)."""
        where = f"GPU {self.index}"
        try:
            model = model_for_product(self.product)
            instances = []
            for inst in self.instances:
                profile = model.profile(inst.profile)
                if inst.size != profile.size:
                    raise CatalogError(f"{inst.profile} spans {profile.size} memory slices, not {inst.size}")
                instances.append(Instance(profile, inst.start, inst.in_use))
        except CatalogError as exc:
            raise ValueError(f"{where}: {exc}") from None
        layout = Layout.of(model, instances)
        problems = layout.problems()
        if problems:
            raise ValueError(f"{where}: {'; '.join(problems)}")
        return layout


class NodeReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node: str = Field(min_length=1)
    gpus: list[GpuReport]

    @model_validator(mode="after")
    def _indices(self) -> NodeReport:
        indices = [g.index for g in self.gpus]
        if len(set(indices)) != len(indices):
            raise ValueError(f"each GPU index may appear once; got {indices}")
        return self

    def layouts(self) -> dict[int, Layout]:
        """Per GPU index, its layout."""
        return {g.index: g.layout() for g in sorted(self.gpus, key=lambda g: g.index)}


def node_report(node: str, products: Sequence[str], layouts: Sequence[Layout]) -> NodeReport:
    """The document for layouts known here (an example, a plan's result)."""
    return NodeReport(node=node, gpus=[
        GpuReport(index=i, product=product, mig_enabled=True, instances=[
            InstanceReport(profile=inst.name, start=inst.start, size=inst.profile.size, in_use=inst.in_use)
            for inst in layout.instances
        ])
        for i, (product, layout) in enumerate(zip(products, layouts))
    ])


def error_text(exc: ValidationError) -> str:
    """A pydantic error as one line per problem: ``gpus.0.instances: GPU 0: 2g.20gb cannot start ...``."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)
