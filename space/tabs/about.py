"""The About tab: the maths behind the app, in our own words (rendered with KaTeX)."""
from __future__ import annotations

import gradio as gr

from ..context import AppContext
from ..room import Room

LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]

ABOUT = r"""
## What a diffusion model does

A diffusion model learns to undo a fixed, gradual corruption of data by Gaussian noise. Sampling starts from pure
noise and removes a little of it at a time; every tab of this app shows one part of that story.

### The forward process (Forward process tab)

Pick a sequence $\beta_1,\dots,\beta_T$ (the **schedule**) and add noise step by step,
$q(x_t\mid x_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\,x_{t-1},\ \beta_t I)$. Products of Gaussians stay Gaussian, so any
$x_t$ can be drawn straight from the clean image:

$$q(x_t \mid x_0) = \mathcal N\big(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t)\,I\big),\qquad
\bar\alpha_t=\prod_{s\le t}(1-\beta_s),\qquad x_t = \sqrt{\bar\alpha_t}\,x_0+\sqrt{1-\bar\alpha_t}\,\varepsilon .$$

$\bar\alpha_t$ is the fraction of signal power left. Schedules differ in *how fast* it falls: the linear schedule
destroys most of the image in the first third of the steps, the cosine schedule spreads the destruction evenly in
log-SNR, $\lambda_t=\log\frac{\bar\alpha_t}{1-\bar\alpha_t}$, which is why it wastes fewer steps on pure noise.

### The DDPM objective

A network $\varepsilon_\theta(x_t, t)$ is trained to tell which noise was added:

$$L(\theta)=\mathbb E_{x_0,\ t,\ \varepsilon}\ \big\|\varepsilon-\varepsilon_\theta(\sqrt{\bar\alpha_t}x_0+\sqrt{1-\bar\alpha_t}\,\varepsilon,\ t)\big\|^2 .$$

Knowing $\hat\varepsilon$ gives a guess of the clean image (shown as $\hat x_0$ in the gallery),
$\hat x_0 = (x_t-\sqrt{1-\bar\alpha_t}\,\hat\varepsilon)/\sqrt{\bar\alpha_t}$, and one reverse step of **DDPM**
(ancestral sampling) moves to the posterior mean and adds fresh noise:

$$x_{t-1}=\frac1{\sqrt{\alpha_t}}\Big(x_t-\frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\hat\varepsilon\Big)+\sigma_t z,\qquad
\sigma_t^2=\tilde\beta_t=\beta_t\frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\ \text{(fixed small) or } \beta_t\ \text{(fixed large)}.$$

### Score matching, and why it is the same thing

Divide by $\sqrt{\bar\alpha_t}$: $\tilde x = x_t/\sqrt{\bar\alpha_t} = x_0+\sigma\varepsilon$ with
$\sigma^2=(1-\bar\alpha_t)/\bar\alpha_t$. This *variance-exploding* (VE) view keeps the signal fixed and lets the noise
grow. The **score** of the noised data density $p_\sigma = p_{\text{data}} * \mathcal N(0,\sigma^2 I)$ points towards
more likely data, and denoising score matching learns it without knowing $p_\sigma$:

$$\min_\theta\ \mathbb E\ \sigma^2\,\big\|s_\theta(x_0+\sigma\varepsilon,\sigma)+\varepsilon/\sigma\big\|^2 .$$

The two parameterisations are one: $s_\theta(\tilde x,\sigma)=-\hat\varepsilon/\sigma$ (VE) and
$\nabla_{x_t}\log p_t=-\hat\varepsilon/\sqrt{1-\bar\alpha_t}$ (VP). So every network here serves every sampler, and any
schedule can be written either as $\bar\alpha_t$ (variance preserving, VP) or as $\sigma_t$ (variance exploding, VE)
with $\bar\alpha = 1/(1+\sigma^2)$. The **Score field** tab draws $s_\theta$ as arrows on 2-D toy data: at large
$\sigma$ they all point to the centre of the data; at small $\sigma$ they point to the nearest piece of it.

### Flow matching: the third objective, and the same family

**Flow matching** (rectified flow) draws a straight line from data to noise, $x_t=(1-t)\,x_0+t\,\varepsilon$ for
$t\in[0,1]$, and trains a network to predict the line's velocity:

$$\min_\theta\ \mathbb E_{x_0,\ t\sim U(0,1),\ \varepsilon}\ \big\|v_\theta(x_t,t)-(\varepsilon-x_0)\big\|^2 .$$

Sampling follows $dx/dt=v_\theta$ from $t=1$ (noise) to $t=0$. This is a Gaussian path too, with signal $\alpha_t=1-t$
and noise $\sigma_t=t$ (log-SNR $2\log\frac{1-t}{t}$; the `flow` schedule is this path on a uniform grid of $t$). So
$\varepsilon$, the score and $v$ are linear in one another given $x_t$:

$$\hat x_0 = x_t - t\,\hat v,\qquad \hat\varepsilon = x_t + (1-t)\,\hat v,\qquad
s = -\hat\varepsilon/\sigma_t,\qquad \hat v = \hat\varepsilon-\hat x_0 ,$$

and every sampler runs every model. DDIM on the `flow` schedule *is* Euler on the flow ODE,
$x_{t'}=x_t+(t'-t)\,\hat v$. The **straightness** $S=\int_0^1\mathbb E\,\|(x_1-x_0)-v(x_t,t)\|^2\,dt$ (Liu et al. 2023)
measures how far the sampling paths bend: $S=0$ means straight lines, which one Euler step follows exactly, which is
why a straight model needs few steps. The **Train** tab trains all three objectives on your drawing and reports $S$.

**Distillation by reflow** (Liu et al. 2023) makes the paths straight on purpose: run the teacher's ODE from many
noises $z$ to its images $x=\Phi(z)$, then train a flow-matching student on those coupled pairs,
$x_t=(1-t)\,x+t\,z$ with target $v=z-x$. The pairs' lines do not cross as independent ones do, so the student's
paths are nearly straight and one to four Euler steps follow them (`mnist-fast`, distilled from `mnist-fm`; the
example "1–4 steps" sets it beside its teacher's DPM-Solver++ and DDIM at the same network evaluations).

### The samplers

| sampler | what one step does |
|---|---|
| `ddpm` | ancestral step above: posterior mean plus fresh noise; needs many steps |
| `ddim` | jumps to $\sqrt{\bar\alpha_{t'}}\hat x_0+\sqrt{1-\bar\alpha_{t'}-\sigma^2}\,\hat\varepsilon+\sigma z$, with $\sigma$ scaled by $\eta$; $\eta=0$ is deterministic and works with few steps |
| `langevin` | annealed Langevin dynamics: at each noise level several steps $\tilde x\leftarrow\tilde x+\tfrac{\alpha}{2}s_\theta+\sqrt{\alpha}\,z$, $\alpha=\text{step size}\cdot\sigma^2$ |
| `euler-maruyama` | one Euler–Maruyama step of the reverse-time SDE $dx=[f-g^2\nabla\log p_t]\,d\tau+g\,d\bar w$ |
| `pc` | predictor–corrector: Langevin "corrector" moves at the current level (size set by the target `snr`), then a reverse-diffusion "predictor" step |
| `ode` | the probability-flow ODE $d\tilde x/d\sigma=\hat\varepsilon$, solved with Heun's second-order method: deterministic, 2 evaluations per step |
| `dpm-solver++` | second-order multistep solver in log-SNR on the $\hat x_0$ prediction; good images in 10–20 steps |
| `euler` | one Euler step of the flow ODE in $t$: $x_{t'}=x_t+(t'-t)\,\hat v$ with $\hat v=\hat\varepsilon-\hat x_0$ (on any schedule the same map as DDIM $\eta=0$) |
| `heun` | Heun's second-order method on the flow ODE in $t$: the Euler step, then the average of $\hat v$ at both ends; 2 evaluations per step |

The **Compare** tab runs several of these from the same starting noise $x_T$ and the same noise draws $z$, so
differences between panels come from the method and the schedule, not from the luck of the draw. NFE counts network
evaluations, the real cost of a sampler.

**Spacing** picks which $t$ a short run visits ("leading", "trailing", "linspace", as diffusers defines them).

### Steering with classifier-free guidance

A class-conditional model (mnist-cond, fashion-cond) learns $\hat\varepsilon(x_t, c)$ for each class $c$ and, because
its labels were replaced by a "null" class $\varnothing$ on part of the training examples (each config's
`label_dropout`), also the unconditional $\hat\varepsilon(x_t,\varnothing)$. Sampling then uses

$$\hat\varepsilon_w = \hat\varepsilon(x_t,\varnothing) + w\,\big(\hat\varepsilon(x_t,c)-\hat\varepsilon(x_t,\varnothing)\big).$$

In score terms this follows $\nabla\log p(x_t) + w\,\nabla\log p(c\mid x_t)$: $w=0$ is the unconditional model,
$w=1$ the conditional one, and $w>1$ exaggerates what makes the sample look like its class, trading diversity for
fidelity (the results page plots both against $w$). Both branches run in one batched network call per step.

The class picker's **random** draws each image's class $c \sim p(c)$ from the seed (uniform: both training sets
hold as many images of every class) and then samples $x \sim p(x \mid c)$. At $w = 1$ that is a sample of
$p(x) = \sum_c p(c)\,p(x \mid c)$, the whole data distribution — the other way to sample unconditionally, through
the class branches instead of $\varnothing$ (on the results page the class branches give more legible samples).
So **random** is where Generate and Compare start for a conditional model; **none** is the null class
$\varnothing$ alone, the branch every guided sample leans on (also reached with a class at $w = 0$).
"""


def offered_text(app: AppContext) -> str:
    """Which image models the app offers and which it holds back, with why: each is judged on the results page
    (docs/RESULTS.md) in noise-equivalent σ and legibility, and a model that falls short is not offered."""
    withdrawn = app.store.withdrawn()
    lines = ["### Which models this app offers, and why", "",
             "Each image model is judged on the results page (docs/RESULTS.md) in **noise-equivalent σ**: the σ of "
             "Gaussian noise on real images that scores as far from the data as the model's samples (0 reads as "
             "real), with bars of 0.04 on Fashion-MNIST and 0.08 on MNIST, and its samples must be about as legible "
             "to a classifier as real ones. A model that falls short is held back until it is retrained.", "",
             "Offered: " + (", ".join(app.store.image_models()) or "none") + "."]
    lines += [f"- Not offered: **{name}** — {why}" for name, why in withdrawn.items()]
    for name in app.store.image_models():
        source, own = app.store.card(name).get("distilled_from"), app.store.sampling(name)
        if source and own:
            lines.append(f"- **{name}** is distilled from {source['teacher']} ({source['method']}): sample it with "
                         f"{own['sampler']} on {own['schedule']} in {' or '.join(map(str, own['steps']))} steps.")
    return "\n".join(lines)


def build(app: AppContext, opened: gr.State) -> Room:
    """The About tab: its text, and which models are offered."""
    with gr.Tab("About", id="about"):
        gr.Markdown(ABOUT, latex_delimiters=LATEX)
        gr.Markdown(offered_text(app))
    return Room("about")
