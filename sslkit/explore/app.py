"""The app's kernel side: one trained model, a few hundred images, three explorers.

The app notebook (``explorer.ipynb``, served by Voilà) is a few calls on a :class:`Session`::

    app = Session.from_env()      # the Target `sslkit explore` wrote; model + images + features
    app.summary()                 # what is shown: model, training, the card's accuracies
    app.embedding_explorer()      # the 2-D map, coloured by the label or a factor
    app.neighbour_explorer()      # a chosen image and its nearest neighbours in feature space
    app.attention_explorer()      # a ViT's CLS attention over the patches (a note otherwise)

The explorers are those of :mod:`sslkit.widgets`; this module only feeds them.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

from sslkit.explore.source import Target, load_images, load_model

ATTENTION_IMAGES = 64   # attention maps are computed once, for the first 64 images (a slider's worth)
NEIGHBOURS = 8          # neighbours shown next to the query: one row of the grid


class Session:
    """A model and its images, with the features the explorers show (on the CPU)."""

    def __init__(self, target: Target, device: Any = None) -> None:
        import sslkit
        self.target = target
        self.notes: list[str] = []   # the zoo's warnings (a quick build, ...), shown in the summary
        self.model = load_model(target, device=sslkit.device(device or target.device), notes=self.notes)
        self.images = load_images(target)                      # the first `samples` images, CPU
        feats, _ = sslkit.eval.extract_features(self.model, self.images.to(self.device))
        self.feats = feats.float().cpu()                       # (N, D)

    @classmethod
    def from_env(cls) -> Session:
        """The Session of the Target in ``$SSLKIT_EXPLORE_CONFIG`` (written by ``sslkit explore``)."""
        return cls(Target.load())

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- what colours the map ----------------------------------------------------------------------
    def colour_by(self) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
        """``({name: (N,) ints}, {name: value names})``: the label and every factor of the images.

        Categorical factors keep their values (names from ``meta["factor_values"]``); continuous
        ones (size, position, frequency, ...) are cut into low / mid / high at their terciles.
        """
        ds = self.images
        labelled = bool((ds.labels >= 0).all())
        colours = {"label": ds.labels} if labelled else {}
        names = {"label": list(ds.classes)} if labelled else {}
        values = ds.meta.get("factor_values", {})
        for name, v in ds.factors.items():
            if v.is_floating_point():
                edges = torch.quantile(v.float(), torch.tensor([1 / 3, 2 / 3]))
                colours[name], names[name] = torch.bucketize(v.float(), edges), ["low", "mid", "high"]
            else:
                colours[name] = v.long()
                if name in values:
                    names[name] = list(values[name])
        if not colours:  # unlabelled images without factors: colour by nothing but the image order
            colours["index (no labels)"] = torch.arange(len(ds)) * 10 // len(ds)
        return colours, names

    # -- the explorers ----------------------------------------------------------------------------
    def embedding_explorer(self):
        from sslkit import widgets
        colours, names = self.colour_by()
        return widgets.embedding_explorer(self.feats, colours, names=names, method="pca")

    def neighbour_explorer(self):
        from sslkit import widgets
        ds = self.images
        labelled = bool((ds.labels >= 0).all())
        return widgets.neighbour_explorer(ds, self.feats, k=min(NEIGHBOURS, len(ds) - 1),
                                          labels=ds.labels if labelled else None,
                                          classes=ds.classes if labelled else None)

    def backbone(self) -> torch.nn.Module:
        """The network whose features ``embed`` gives (DINO evaluates its teacher, the others their backbone)."""
        teacher = getattr(self.model, "teacher_backbone", None)
        return self.model.backbone if teacher is None else teacher

    def has_attention(self) -> bool:
        params = inspect.signature(self.backbone().forward_features).parameters
        return "return_attention" in params

    @torch.no_grad()
    def attention(self, n: int = ATTENTION_IMAGES) -> torch.Tensor | None:
        """(n, heads, T, T) last-block attention of the first ``n`` images (None without attention)."""
        if not self.has_attention():
            return None
        x = self.images.batch(torch.arange(min(n, len(self.images)))).to(self.device)
        _, attn = self.backbone().forward_features(x, return_attention=True)
        return attn.float().cpu()

    def attention_explorer(self):
        from IPython.display import Markdown

        from sslkit import widgets
        attn = self.attention()
        if attn is None:
            name = type(self.backbone()).__name__
            return Markdown(f"The **{name}** backbone has no attention maps: only a Vision Transformer "
                            f"(backbone `vit_tiny`) has them. Try `sslkit explore --model dino_shapes`.")
        return widgets.attention_explorer(self.images.batch(torch.arange(len(attn))), attn)

    # -- what is shown ------------------------------------------------------------------------------
    def summary_text(self) -> str:
        """Markdown: the model, how it was trained, its card's accuracies, and the images shown."""
        t, m = self.target, self.model
        backbone = getattr(m, "backbone_name", None) or type(m.backbone).__name__
        lines = []
        if t.model is not None:
            from sslkit import zoo
            card = zoo.card(t.model, t.zoo_dir)
            lines.append(f"**{t.model}** (model zoo): {card.get('purpose', '')}")
            lines.append(f"`{card.get('method')}` with a `{backbone}` backbone, trained for {card.get('steps')} "
                         f"steps (recipe: {card.get('recipe_steps')}) at batch {card.get('batch_size')}.")
            knn = card.get("metrics", {}).get("label", {}).get("knn")
            if knn:
                lines.append(f"kNN label accuracy on the test split (from its card): model {knn['model']:.1%}, "
                             f"random init {knn['random_init']:.1%}, raw pixels {knn['raw']:.1%}.")
        else:
            from sslkit.train import load_checkpoint
            ckpt = load_checkpoint(t.checkpoint)
            steps = ckpt.get("loop", {}).get("step")
            lines.append(f"**{t.checkpoint}** (checkpoint): `{ckpt['config'].get('method')}` with a "
                         f"`{backbone}` backbone, trained for {steps} step{'' if steps == 1 else 's'} on "
                         f"{ckpt['config'].get('data', {}).get('name')!r}.")
        opts = ", ".join(f"{k}={v!r}" for k, v in t.options.items())
        lines.append(f"Showing the first {len(self.images)} images of `{t.data}` ({t.split} split"
                     f"{', ' + opts if opts else ''}); features: {self.feats.shape[1]} numbers per image.")
        lines += [f"*Note:* {n}" for n in self.notes]
        return "\n\n".join(lines)

    def summary(self):
        from IPython.display import Markdown
        return Markdown(self.summary_text())
