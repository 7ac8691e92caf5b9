"""attach_exits: exit heads after named submodules of any ``nn.Module``.

Exits are found by module name, as timm's feature extraction finds its ``out_indices``. Where
torch.fx traces the backbone and its graph is sequential between the named points (the only
value crossing each cut is that module's output), the backbone is cut there into ``stages``:
the result has the same ``stem`` / ``stages`` / ``heads`` / ``exit_stages`` shape as
``MultiExitNet``, so early exit really skips the later stages, and per-exit cost, deployment,
quantization and every method work unchanged. Otherwise the exits are read by forward hooks
from one full backbone pass (``HookedExits``), and anything that would need the split says so.

The backbone's own output (logits of shape ``(batch, num_classes)``) is the deepest exit;
when it ends in an ``nn.Linear``, that layer's input is the deepest feature the shallow heads
are sized to (so the self-distillation hint compares like with like). The result shares its
modules (and so its weights) with the backbone passed in.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import torch
import torch.fx as fx
import torch.nn as nn

from .heads import build_head
from .multi_exit import MultiExitOutput
from ..utils import eval_mode


class _OutputHead(nn.Module):
    """Deepest exit of a backbone that does not end in a Linear: its output is logits and feature."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


class _FinalLinearHead(nn.Module):
    """Deepest exit: the backbone's own last Linear, returning (logits, the feature it saw)."""

    def __init__(self, fc: nn.Linear) -> None:
        super().__init__()
        self.fc = fc

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc(x), x


class VectorHead(nn.Module):
    """Shallow exit on a (B, F) vector or (B, C, L) sequence: pool → Linear → ReLU → Linear.

    The hidden layer has the deepest feature's width, so it doubles as the adaptation layer the
    self-distillation hint needs (as the BYOT head's last 1×1 conv does for image maps).
    """

    def __init__(self, in_features: int, num_classes: int, *, out_channels: int, **_: object) -> None:
        super().__init__()
        self.lift = nn.Sequential(nn.Linear(in_features, out_channels), nn.ReLU(inplace=True))
        self.fc = nn.Linear(out_channels, num_classes)
        self.out_features = out_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() > 2:
            x = x.flatten(2).mean(-1)
        feat = self.lift(x)
        return self.fc(feat), feat


class _ExitsBase(nn.Module):
    """What both attached forms share: config, exit names, the MultiExitNet-like interface."""

    config: dict[str, Any]
    heads: nn.ModuleList
    exit_names: list[str]

    @property
    def num_exits(self) -> int:
        """Number of classifiers (the named points plus the backbone's own output)."""
        return len(self.heads)


class AttachedExits(_ExitsBase):
    """A backbone cut into sequential stages at the named modules, one exit after each stage."""

    def __init__(self, stages: list[nn.Module], heads: list[nn.Module], config: dict[str, Any]) -> None:
        super().__init__()
        self.stem = nn.Identity()
        self.stages = nn.ModuleList(stages)
        self.heads = nn.ModuleList(heads)
        self.exit_stages = tuple(range(len(stages)))
        self.exit_names = list(config["exits"]) + ["output"]
        self.config = config

    def forward(self, x: torch.Tensor) -> MultiExitOutput:
        logits, feats, maps = [], [], []
        h = self.stem(x)
        for stage, head in zip(self.stages, self.heads):
            h = stage(h)
            maps.append(h)
            out, feat = head(h)
            logits.append(out)
            feats.append(feat)
        return MultiExitOutput(logits, feats, maps)

    def exit_modules(self, exit_index: int) -> list[nn.Module]:
        """Modules on the path from the input to exit ``exit_index``."""
        return [self.stem, *self.stages[: exit_index + 1], self.heads[exit_index]]

    def forward_exit(self, x: torch.Tensor, exit_index: int) -> torch.Tensor:
        """Logits of one exit, computing only the stages that exit needs."""
        h = self.stem(x)
        for stage in self.stages[: exit_index + 1]:
            h = stage(h)
        return self.heads[exit_index](h)[0]


class HookedExits(_ExitsBase):
    """Exits read by forward hooks from a full backbone pass (a backbone that cannot be cut)."""

    def __init__(self, backbone: nn.Module, heads: list[nn.Module], config: dict[str, Any], reason: str) -> None:
        super().__init__()
        self.stem = nn.Identity()  # where quantize_model puts its input quantizer, as on MultiExitNet
        self.backbone = backbone
        self.heads = nn.ModuleList(heads)
        self.exit_names = list(config["exits"]) + ["output"]
        self.config = config
        self.split_reason = reason

    def forward(self, x: torch.Tensor) -> MultiExitOutput:
        # Hooks live for one pass only: a deep copy (deploy) must not write into the original.
        taps: dict[str, torch.Tensor] = {}
        handles = [self.backbone.get_submodule(n).register_forward_hook(
            lambda _m, _i, o, n=n: taps.__setitem__(n, o)) for n in self.config["exits"]]
        try:
            final = self.backbone(self.stem(x))
        finally:
            for h in handles:
                h.remove()
        maps = [taps[n] for n in self.config["exits"]]
        logits, feats = [], []
        for head, h in zip(self.heads, [*maps, final]):
            out, feat = head(h)
            logits.append(out)
            feats.append(feat)
        return MultiExitOutput(logits, feats, maps)

    def exit_modules(self, exit_index: int) -> list[nn.Module]:
        """The whole backbone (it cannot be cut) and the exit's head."""
        return [self.stem, self.backbone, self.heads[exit_index]]

    def forward_exit(self, x: torch.Tensor, exit_index: int) -> torch.Tensor:
        """Logits of one exit: the whole backbone runs (see ``split_reason``), but only that exit's head."""
        taps: dict[str, torch.Tensor] = {}
        names = self.config["exits"]
        handle = None
        if exit_index < len(names):
            handle = self.backbone.get_submodule(names[exit_index]).register_forward_hook(
                lambda _m, _i, o: taps.__setitem__("h", o))
        try:
            final = self.backbone(self.stem(x))
        finally:
            if handle is not None:
                handle.remove()
        return self.heads[exit_index](taps.get("h", final))[0]


class ExitTracer(fx.Tracer):
    """Keeps the named exit points whole, so each appears as one call_module node."""

    def __init__(self, leaves: set[str]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaves or super().is_leaf_module(m, qualname)


def _cut_ok(nodes: list[fx.Node], pos: dict[fx.Node, int], cut: fx.Node) -> bool:
    """True when ``cut``'s output is the only value computed before it and used after it."""
    p = pos[cut]
    for n in nodes[p + 1:]:
        for a in n.all_input_nodes:
            if pos[a] <= p and a is not cut and a.op != "get_attr":
                return False
    return True


def _segment(root: nn.Module, nodes: list[fx.Node], start: int, end: int, inp: fx.Node) -> fx.GraphModule:
    """The nodes (start, end] as a GraphModule taking ``inp``'s value; get_attr nodes are re-read."""
    g = fx.Graph()
    env: dict[fx.Node, fx.Node] = {inp: g.placeholder("x")}

    def arg(a: fx.Node) -> fx.Node:
        if a not in env:  # a parameter / buffer read earlier in the graph: read it again here
            env[a] = g.node_copy(a, arg)
        return env[a]

    for n in nodes[start + 1:end + 1]:
        if n.op not in ("placeholder", "output") and n not in env:
            env[n] = g.node_copy(n, arg)
    g.output(env[nodes[end]])
    return fx.GraphModule(root, g)


def _split(backbone: nn.Module, names: list[str]) -> tuple[list[nn.Module], nn.Linear | None, list[str]] | str:
    """Stages cut after ``names`` (in execution order) and the final Linear, or why it cannot be done."""
    try:
        graph = ExitTracer(set(names)).trace(backbone)
    except Exception as exc:  # fx raises many types on untraceable Python (data-dependent control flow …)
        return f"torch.fx cannot trace it ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    nodes = list(graph.nodes)
    pos = {n: i for i, n in enumerate(nodes)}
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        return f"its forward takes {len(placeholders)} inputs, not one"
    taps = []
    for name in names:
        calls = [n for n in nodes if n.op == "call_module" and n.target == name]
        if len(calls) != 1:
            return f"'{name}' is called {len(calls)} times in one forward"
        taps.append(calls[0])
    taps.sort(key=pos.__getitem__)
    out = nodes[-1].args[0]
    if not isinstance(out, fx.Node):
        return "its forward does not return one tensor"
    final_fc: nn.Linear | None = None
    last = out
    fc = backbone.get_submodule(str(out.target)) if out.op == "call_module" else None  # a call_module target is a name
    if isinstance(fc, nn.Linear) and len(out.all_input_nodes) == 1 and _cut_ok(nodes, pos, out.all_input_nodes[0]) \
            and out.all_input_nodes[0] not in taps:
        final_fc, last = fc, out.all_input_nodes[0]
    for t in taps:
        if t is out or t is last:
            return f"'{t.target}' gives the backbone's output, which is already the deepest exit"
        if not _cut_ok(nodes, pos, t):
            return f"values computed before '{t.target}' are used after it (a skip connection across the cut)"
    stages: list[nn.Module] = []
    start, inp = pos[placeholders[0]], placeholders[0]
    for cut in [*taps, last]:
        stages.append(_segment(backbone, nodes, start, pos[cut], inp))
        start, inp = pos[cut], cut
    return stages, final_fc, [str(t.target) for t in taps]


@torch.no_grad()
def _probe(backbone: nn.Module, names: list[str], input_shape: Sequence[int]) -> tuple[dict, torch.Tensor, int | None]:
    """Output of each named module (in execution order), the backbone output and the last image map's side."""
    taps: dict[str, torch.Tensor] = {}
    last_side: list[int] = []
    modules = dict(backbone.named_modules())
    handles = [modules[n].register_forward_hook(lambda _m, _i, o, n=n: taps.__setitem__(n, o)) for n in names]
    handles += [m.register_forward_hook(lambda _m, _i, o: last_side.append(o.shape[-1])
                                        if isinstance(o, torch.Tensor) and o.dim() == 4 else None)
                for m in backbone.modules() if not list(m.children())]
    dev = next((p.device for p in backbone.parameters()), torch.device("cpu"))
    try:
        with eval_mode(backbone):
            out = backbone(torch.zeros(2, *input_shape, device=dev))
    finally:
        for h in handles:
            h.remove()
    return taps, out, (last_side[-1] if last_side else None)


def attach_exits(backbone: nn.Module, at: Sequence[str], num_classes: int, *, input_shape: Sequence[int],
                 heads: str = "byot") -> AttachedExits | HookedExits:
    """Exit heads after the named submodules of ``backbone`` (see the module docstring).

    ``at`` names modules as ``backbone.named_modules()`` does ("layer2", "features.6");
    ``input_shape`` is one sample's shape without the batch, e.g. (3, 32, 32); ``heads`` is a
    head kind (byot, byot_light, linear, scan) for image maps; vectors and sequences get a
    ``VectorHead``.
    """
    names = list(at)
    known = dict(backbone.named_modules())
    for name in names:
        if name not in known or name == "":
            some = ", ".join(n for n in list(known)[1:13] if n)
            raise ValueError(f"attach_exits: {type(backbone).__name__} has no submodule '{name}'; "
                             f"names look like: {some} (see backbone.named_modules())")
    if len(set(names)) != len(names):
        raise ValueError(f"attach_exits: exit names repeat: {names}")
    taps, out, last_side = _probe(backbone, names, tuple(input_shape))
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != num_classes:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"attach_exits: {type(backbone).__name__} returns {got}; its output must be "
                         f"(batch, {num_classes}) logits, the deepest exit — end it with nn.Linear(…, {num_classes})")
    for name in names:
        if name not in taps or not isinstance(taps[name], torch.Tensor):
            raise ValueError(f"attach_exits: '{name}' {'did not run' if name not in taps else 'returns no tensor'} "
                             "in a forward pass; name a module whose output is a feature tensor")
    split = _split(backbone, names)
    if isinstance(split, str):
        order = list(taps)  # the order the hooks fired in: shallow → deep
        final_fc = None  # no graph: which Linear produced the output is unknown, so the logits are the feature
        deep_features = num_classes
    else:
        stages, final_fc, order = split
        deep_features = final_fc.in_features if final_fc is not None else num_classes
    head_list: list[nn.Module] = []
    for name in order:
        t = taps[name]
        if t.dim() == 4:
            ratio = max(int(round(t.shape[-1] / last_side)), 1) if last_side else 1
            head_list.append(build_head(heads, t.shape[1], num_classes, out_channels=deep_features, downsample=ratio))
        else:
            head_list.append(VectorHead(t.shape[1] if t.dim() > 1 else 1, num_classes, out_channels=deep_features))
    head_list.append(_FinalLinearHead(final_fc) if final_fc is not None else _OutputHead())
    dev = next((p.device for p in backbone.parameters()), torch.device("cpu"))
    head_list = [h.to(dev) for h in head_list]
    shape = [int(s) for s in input_shape]
    config: dict[str, Any] = dict(kind="attached", backbone=f"{type(backbone).__module__}.{type(backbone).__qualname__}",
                                  exits=list(order), heads=heads, input_shape=shape, num_classes=int(num_classes),
                                  in_channels=shape[0], image_size=shape[-1] if len(shape) == 3 else None)
    if isinstance(split, str):
        warnings.warn(f"attach_exits: {type(backbone).__name__} cannot be cut between the exits: {split}; exits are "
                      "read by hooks from a full pass, so forward_exit and early exit compute the whole backbone",
                      stacklevel=2)
        return HookedExits(backbone, head_list, config, split)
    return AttachedExits(stages, head_list, config)


def plain_config(model: nn.Module) -> dict[str, Any]:
    """What a checkpoint records about a network that is not a wxy_hw model: its class, by name only."""
    return dict(kind="plain", backbone=f"{type(model).__module__}.{type(model).__qualname__}")
