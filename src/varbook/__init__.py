"""varbook: the tested library behind an executable book of papers on variational inference,
diffusion and flows, stochastic gradient estimators and Bayesian deep learning.

A map of the library: each subpackage, what it holds, and the chapters of the book that import it.

==============  ============================================  ====================================================
subpackage      what it holds                                 chapters (``book/<part>/<slug>.md``)
==============  ============================================  ====================================================
``runtime``     device, seeding, profiles, ``check_choice``,  every chapter (through ``book.start``); directly:
                the random-draw helpers (``randn``,           bayes/ssvi, gradients/programmable_vi,
                ``rand``, ...), ``descend`` and ``History``,  gradients/wta_crs
                timer and memory meter
``protocols``   the callable types ``Drift``, ``Diffusion``,  none directly (the annotations of sde, diffusion,
                ``Score``, ``Control`` and ``Baseline``       estimators and vi)
``book``        the claims ``Report``, the chapter runner,    every chapter
                the dashboard and the site build
``data``        offline loaders (digits, MNIST-5k, images,    bayes/ssvi, diffusion/diffusion_principles,
                MovieLens, plays), synthetic data,            diffusion/red_diff,
                ``minibatches``                               diffusion/stochastic_interpolants,
                                                              gradients/programmable_vi,
                                                              gradients/straight_through, gradients/wta_crs,
                                                              latent/mult_vae
``nn``          MLP, time-conditioned MLP and small UNet,     diffusion/diffusion_principles, diffusion/red_diff,
                tiny transformer, gated MLP, ``train_steps``  gradients/straight_through, gradients/wta_crs
``estimators``  gradient estimators of stochastic binary      gradients/straight_through,
                neurons, baselines, the bias/variance         gradients/programmable_vi
                harness, reparameterisation
``vi``          the Gaussian KL, ELBO/IWELBO/HVI/VIMCO        gradients/programmable_vi (and bayes/ssvi through
                programs, programmable VI, small VI models    ``vi.kl``)
``diffusion``   schedules, parameterisations, fields,         diffusion/diffusion_principles, diffusion/red_diff,
                losses, samplers, guidance, interpolants,     diffusion/stochastic_interpolants
                flow maps, inverse problems, metrics
``sde``         ODE and SDE solvers, ODE log-likelihoods,     diffusion/diffusion_principles,
                Markov-approximate fractional Brownian        diffusion/stochastic_interpolants, latent/fbm_sde
                motion
``bayes``       mean-field layers, sparse subspace VI,        bayes/ssvi
                predictive metrics
``llm``         character-level language-model tasks,         gradients/wta_crs
                WTA-CRS approximate backpropagation
``recsys``      Mult-VAE and Mult-DAE, EASE and popularity    latent/mult_vae
                baselines, the strong-generalisation split,
                ranking metrics
``imaging``     linear measurement operators, PSNR and SSIM   diffusion/red_diff
==============  ============================================  ====================================================

Conventions shared by every subpackage (see ``DESIGN.md``): drifts, scores and controls take ``(x, t)``
first (:mod:`varbook.protocols`); each family states its time direction once, in its package docstring
(:mod:`varbook.diffusion`: data at :math:`t = 0`, noise at :math:`t = 1`; :mod:`varbook.sde`: forward along
the grid); every function that draws noise takes a ``generator`` and draws through :mod:`varbook.runtime`;
every training loop steps through :func:`varbook.runtime.descend` and returns a
:class:`varbook.runtime.History`; choices among named options are checked by
:func:`varbook.runtime.check_choice`.
"""

__version__ = "0.1.0"
