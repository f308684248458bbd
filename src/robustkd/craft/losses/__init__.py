"""The CRAFT study's objectives (paper 004, section 3), one module per loss family.

Functions compute one term from tensors, per example where the paper weights examples; the
tasks of :mod:`robustkd.craft.tasks` assemble them into the named loss components the training
loop logs. Shapes: ``B`` images, ``V = M + 1`` views (clean first), ``K`` classes, ``D``
embedding dimension.

- :mod:`~robustkd.craft.losses.logit_kd`: :func:`~robustkd.craft.losses.logit_kd.kd_loss`,
  ``T^2 KL(softmax(z_T / T) || softmax(z_S / T))`` (Hinton et al.; L_KD of section 3.2).
- :mod:`~robustkd.craft.losses.attention`: attention transfer (Zagoruyko & Komodakis),
  ``a = normalize(flatten(mean_c f^2))``, the squared L2 distance of the maps averaged over
  layers and images (L_feat).
- :mod:`~robustkd.craft.losses.crd`: Tian et al.'s contrastive representation distillation
  with a memory bank of negatives (buffers), NCE, fixed normalisation constants and momentum
  updates, and the sampling of its negatives.
- :mod:`~robustkd.craft.losses.craft`: CRAFT (sections 3.3-3.5), the pooled multi-layer
  embedding, cross-view InfoNCE, teacher reliability, the fragility direction, de-alignment and
  :class:`~robustkd.craft.losses.craft.CraftObjective`, their reliability-weighted sum with ERM.
"""
