"""Constraints over a source stack, as wrappers around a stack denoiser (METHOD.md §3).

Each wrapper maps `(x, sigma [B]) -> denoised`, like the model, so any EDM sampler runs unchanged.
A score s enters a sampler through its denoised form `x + σ²·s` (EDM: s = (D − x)/σ²).

- `MixtureCoupling`: Eq. (2), K source chains and a mixture chain linked by a Gaussian likelihood.
- `KnownValues`: chains, or regions of chains, whose clean value is known (locked stems for
  accompaniment §3.2; the context of the previous chunk when continuing long audio).
- `DiracConstraint`: MSDM's Dirac likelihood for separation (§3.3); the constrained source is the
  mixture minus the free ones.
- `ProjectedDirac`: the same Dirac likelihood with no source singled out: all K sources move on
  the plane Σ_k x_k = y (ours; does not diverge at any step count, see
  `gmsdi.inference.tasks.dirac_error`).
- `keep_silence`: after separation, every source is silent where the mixture is.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from gmsdi.models.spectral import Stft

StackDenoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

GAMMA_MODES: tuple[str, ...] = ("relative", "absolute", "denoised", "wiener")
LOCKED_NOISE: tuple[str, ...] = ("fixed", "fresh")
# The "wiener" coupling's weights: |STFT(D)|^(2·power) + floor × their mean (`MixtureCoupling`).
# Power 0.5 (magnitudes) named 0.78 of the probe's stems against 0.44 with power 1 (train/RUNS.md, session 12).
WIENER_POWER = 0.5
WIENER_FLOOR = 0.01
DIRAC_MODES: tuple[str, ...] = ("constrained", "projected")


def check_coupling_sigma_min(value: float) -> float:
    """The σ below which `MixtureCoupling` leaves the chains uncoupled: a number ≥ 0 (0 = never)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"coupling_sigma_min must be a number ≥ 0 (0 couples at every σ), got {value!r}")
    return float(value)


def check_gamma(value: float, name: str) -> float:
    """A γ must be positive; `math.inf` switches its coupling off."""
    value = float(value)
    if not value > 0 or math.isnan(value):
        raise ValueError(f"{name} must be positive (or inf to switch the coupling off), got {value}")
    return value


MAX_COUPLING_GROWTH = 10.0


def coupling_growth(sigmas: torch.Tensor, gamma_x: float, gamma_y: float, mode: str, moving: int,
                    sampler: str = "heun", s_churn: float = 0.0, s_tmin: float = 0.0) -> float:
    """How much an Euler/Heun schedule can amplify the mixture residual r = y − Σx through Eq. (2).

    The coupling alone gives dr/dσ = c(σ)·r/σ with c = σ²·(G/γ_x² + 1/γ_y²) (σ² → 1/g² in relative
    mode), G the number of moving sources. An explicit step from σ̂ to σ_next (h = 1 − σ_next/σ̂)
    multiplies r by 1 − c·h (Euler) or 1 − (h/2)·(c(σ̂) + c(σ_next)·(1 − c(σ̂)·h)/(1 − h)) (Heun); a
    factor above 1 in size means the step overshoots and the residual grows. This is the product
    of those factors over the steps (each at least 1); the last step, to σ = 0, is excluded (it
    returns the denoised value). Stable settings give 1; the product explodes when γ is too tight
    for the step count (e.g. relative γ = 0.8 with four sources and 32 Heun steps: ~8e5).

    Args:
        sigmas: [n + 1] the schedule, ending at 0.
        gamma_x, gamma_y, mode: as `MixtureCoupling`.
        moving: G, the sources that are sampled (not locked).
        sampler: "euler" or "heun" (others are treated as Euler).
        s_churn: the sampler's churn (Karras S_churn), which lengthens every step at σ ≥ s_tmin.
    """
    inv = moving / gamma_x**2 + 1.0 / gamma_y**2

    def c(sigma: float) -> float:
        return inv if mode == "relative" else sigma**2 * inv

    growth = 1.0
    for factor in step_factors(sigmas, c, sampler, s_churn, s_tmin):
        growth *= max(1.0, abs(factor))
        if math.isinf(growth):
            break
    return growth


def step_factors(sigmas: torch.Tensor, c: Callable[[float], float], sampler: str = "heun",
                 s_churn: float = 0.0, s_tmin: float = 0.0) -> list[float]:
    """What each explicit step of a schedule does to a residual r with dr/dσ = c(σ)·r/σ: from σ̂
    (σ raised by the churn) to σ_next, h = 1 − σ_next/σ̂, Euler multiplies r by 1 − c·h and Heun
    by 1 − (h/2)·(c(σ̂) + c(σ_next)·(1 − c(σ̂)·h)/(1 − h)). The last step, to σ = 0, is left out
    (it returns the denoised value). |factor| > 1: the step overshoots. The churn applies at σ ≥ s_tmin."""
    n = len(sigmas) - 1
    churn = min(s_churn / n, math.sqrt(2) - 1) if n else 0.0
    out = []
    for i in range(n - 1):
        s_i = float(sigmas[i])
        s_hat, s_next = s_i * (1 + (churn if s_i >= s_tmin else 0.0)), float(sigmas[i + 1])
        h = (s_hat - s_next) / s_hat
        if sampler == "heun":
            out.append(1 - h / 2 * (c(s_hat) + c(s_next) * (1 - c(s_hat) * h) / (1 - h)))
        else:
            out.append(1 - c(s_hat) * h)
    return out


def check_coupling(sigmas: torch.Tensor, gamma_x: float, gamma_y: float, mode: str, moving: int,
                   sampler: str = "heun", s_churn: float = 0.0, limit: float = MAX_COUPLING_GROWTH,
                   s_tmin: float = 0.0) -> float:
    """Raises a ValueError that says what to change when `coupling_growth` exceeds `limit`.

    A γ this tight for the step count makes the explicit sampler overshoot the coupling at every
    step, and the stems blow up (to NaN). Returns the growth otherwise.
    """
    if mode == "wiener":  # an exact weighted projection of the estimates; takes no γ
        return 0.0
    if mode == "denoised":  # no dynamics of its own: one correction of the estimates per evaluation
        c = moving / gamma_x**2 + 1.0 / gamma_y**2
        if c > 2.0:
            g = math.sqrt((moving + 1) / 2.0)
            raise ValueError(f"gamma_x={gamma_x:g}, gamma_y={gamma_y:g} (denoised mode) over-correct the residual "
                             f"of the {moving + 1} chains' estimates (G/g_x² + 1/g_y² = {c:.2f} > 2); use "
                             f"gamma_x = gamma_y ≥ {g:.2f} (√(G+1) = {math.sqrt(moving + 1):.2f} makes them sum "
                             "exactly)")
        return abs(1.0 - c)
    growth = coupling_growth(sigmas, gamma_x, gamma_y, mode, moving, sampler, s_churn, s_tmin)
    if growth <= limit:
        return growth
    scale = 1.0  # the smallest common factor on both γ that keeps the schedule stable
    while coupling_growth(sigmas, gamma_x * scale, gamma_y * scale, mode, moving, sampler, s_churn, s_tmin) > limit:
        scale *= 1.05
    steps = len(sigmas) - 1
    unit = " (relative: γ = g·σ)" if mode == "relative" else " (waveform units)"
    raise ValueError(
        f"gamma_x={gamma_x:g}, gamma_y={gamma_y:g}{unit} are too tight for {steps} {sampler} steps with "
        f"{moving} generated source(s): each step would overshoot the mixture coupling and the stems would blow "
        f"up (residual growth {growth:.3g}). Use gamma_x={gamma_x * scale:.2f}, gamma_y={gamma_y * scale:.2f} or "
        "larger, or more steps (the default γ = √(G+1) is stable at any step count)"
    )


class MixtureCoupling:
    """Eq. (2) of the paper (METHOD.md §3.1) over a stack [B, K+1, T]: K sources, then the mixture.

        score(x_k) = S(x_k, z_k, σ) + (y − Σ_l x_l) / γ_x²
        score(y)   = S(y, z_1⊗...⊗z_K, σ) + (Σ_l x_l − y) / γ_y²

    In denoised form, with r = y − Σ_l x_l: D'_k = D_k + (σ²/γ_x²)·r and D'_y = D_y − (σ²/γ_y²)·r.

    Mode "denoised" (ours) takes the residual of the chains' denoised estimates instead,
    r̂ = D_y − Σ_l D_l: D'_k = D_k + r̂/g_x², D'_y = D_y − r̂/g_y². With g_x = g_y = √(K+1) this
    is the orthogonal projection of the K+1 estimates onto {y = Σ x}, so the estimates agree at every
    step and the output stems sum to the mixture chain. The Eq. (2) forms pull the noisy states
    together: the K+1 chains' independent noise then partly cancels, each chain holds less noise
    than its σ says, and the network, denoising for σ, removes structure with it (measured:
    train/RUNS.md, "sampler"). Correcting only the estimates leaves each chain's noise as the
    sampler expects. Known entries (locked stems, context) enter r̂ with their clean values
    (`generate_sources` passes them).

    Mode "wiener" (ours) is the same projection of the estimates with a weight per chain and
    time-frequency bin instead of equal ones: with V_c = |STFT(D_c)|^(2p) + floor·mean(V) (the
    chain's own estimated power, p = `wiener_power`), chain c takes the share a_c = V_c / Σ_c' V_c'
    of the residual's STFT, D'_k = D_k + synth(a_k·STFT(r̂)), D'_y = D_y − synth(a_y·STFT(r̂)). The
    shares sum to 1 in every bin, so the estimates still sum exactly; a chain that is silent in a
    bin takes none of it. The equal split of "denoised" writes every part of the residual into
    every stem, e.g. the mixture chain's drum hits into the bass (the stripes of the look grids). It
    is the minimum of Σ_c ‖δ_c‖²/V_c under the sum constraint: a Gaussian prior per chain and bin
    whose variance is the chain's own estimate, as a Wiener filter has. γ is not used; known
    entries (`known_mask`) take no share.

    Args:
        denoiser: the per-chain (guided) denoiser over [B, K+1, T].
        gamma_x, gamma_y: the likelihood widths; `math.inf` removes that side of the coupling
            (not used by "wiener").
        mode: "wiener" (above), "denoised" (above), "absolute" (γ in waveform units, the same at
            every σ) or "relative" (γ = g·σ, so a value means the same at every step; ours,
            METHOD.md §3.1). With relative γ the coupling pulls the residual by a fraction
            c = G/g_x² + 1/g_y² of each Euler/Heun step's fraction h = (σ_i − σ_{i+1})/σ_i, G the
            number of sources that move (not locked);
            steps are stable for h·c < 2 and do not overshoot for h·c ≤ 1. Since the coupling
            term of dx/dσ is r/(g²σ), a residual that a step leaves behind is divided by the next
            σ: keep h·c near 1 when steps are few. g_x = g_y = √(G+1) gives c = 1 (with nothing
            locked, √(K+1) is also the spread of y(σ) − Σx_k(σ) for K+1 consistent signals noised
            independently).
        known_mask: [B or 1, K+1, T] bool, True at known entries ("wiener": they take no share).
        wiener_power, wiener_floor: p and the floor of the "wiener" weights.
        n_fft, hop: the STFT of the "wiener" split (samples).
        sigma_min: (ours) the coupling acts at σ ≥ sigma_min only; below it every chain is its own
            denoiser. 0 couples at every step. The high σ decide where notes and hits fall, so the
            chains still agree on them; at low σ the residual is detail that no stem chain explains,
            and splitting it writes broadband hiss into every stem (train/RUNS.md, session 13).
    """

    def __init__(self, denoiser: StackDenoiser, gamma_x: float, gamma_y: float, mode: str = "relative",
                 known_mask: torch.Tensor | None = None, wiener_power: float = WIENER_POWER,
                 wiener_floor: float = WIENER_FLOOR, n_fft: int = 1024, hop: int = 256,
                 sigma_min: float = 0.0) -> None:
        if mode not in GAMMA_MODES:
            raise ValueError(f"unknown gamma mode {mode!r}; valid names are {sorted(GAMMA_MODES)}")
        if not (wiener_power > 0 and wiener_floor > 0):
            raise ValueError(f"wiener_power and wiener_floor must be positive, got {wiener_power}, {wiener_floor}")
        self.sigma_min = check_coupling_sigma_min(sigma_min)
        self.denoiser = denoiser
        self.gamma_x = check_gamma(gamma_x, "gamma_x")
        self.gamma_y = check_gamma(gamma_y, "gamma_y")
        self.mode = mode
        self.known_mask = None if known_mask is None else known_mask.bool()
        self.wiener_power, self.wiener_floor = float(wiener_power), float(wiener_floor)
        self.stft = Stft(n_fft, hop)

    def _wiener_shares(self, d: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """The residual r [B, T] split over the chains of d [B, N, T] by their power per bin: [B, N, T]."""
        hop, t = self.stft.hop, d.shape[-1]
        pad = -t % hop
        spec = self.stft.analyze(F.pad(d.float(), (0, pad)))  # [B, N, F, frames]
        v = spec.abs().pow(2 * self.wiener_power)
        free = d.new_ones(d.shape[0], d.shape[1], 1, 1, dtype=torch.float32)
        if self.known_mask is not None:  # the fraction of each frame's hop block that is not known
            known = F.pad(self.known_mask.float().expand_as(d).contiguous(), (0, pad), mode="replicate")
            free = 1 - known.reshape(*known.shape[:2], -1, hop).mean(-1)[:, :, None]  # [B, N, 1, frames]
        v = (v + self.wiener_floor * v.mean(dim=(1, 2, 3), keepdim=True)) * free
        shares = v / v.sum(dim=1, keepdim=True).clamp_min(1e-30)
        return self.stft.synthesize(shares * self.stft.analyze(F.pad(r.float(), (0, pad)))[:, None])[..., :t]

    def _gain(self, gamma: float, sigma: torch.Tensor) -> torch.Tensor:
        """σ²/γ² per batch element, [B, 1] (1/g² in the relative and denoised modes)."""
        if math.isinf(gamma):
            return sigma.new_zeros(sigma.shape[0], 1)
        if self.mode in ("relative", "denoised"):
            return sigma.new_full((sigma.shape[0], 1), 1.0 / gamma**2)
        return (sigma**2 / gamma**2)[:, None]

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x: [B, K+1, T] (sources, then the mixture); sigma: [B]. Returns [B, K+1, T]."""
        d = self.denoiser(x, sigma)
        on = (sigma >= self.sigma_min).to(d.dtype)[:, None]  # [B, 1]: 0 where the chains run uncoupled
        if not on.any():
            return d
        v = d if self.mode in ("denoised", "wiener") else x
        r = on * (v[:, -1] - v[:, :-1].sum(dim=1))  # [B, T]
        d = d.clone()
        if self.mode == "wiener":
            shares = self._wiener_shares(d, r).to(d.dtype)
            d[:, :-1] += shares[:, :-1]
            d[:, -1] -= shares[:, -1]
            return d
        d[:, :-1] += (self._gain(self.gamma_x, sigma) * r)[:, None]
        d[:, -1] -= self._gain(self.gamma_y, sigma) * r
        return d


class KnownValues:
    """Entries of the stack whose clean value is known: locked stems and continuation context.

    METHOD.md §3.2: a locked source enters every step at the current noise level,
    x_i(σ) = x_i + σ·ε, and its denoised value is x_i itself.

    Args:
        denoiser: the stack denoiser to wrap (its output at known entries is ignored).
        known: [B or 1, N, T] clean values (anything where `mask` is False).
        mask: [B or 1, N, T] bool, True where the value is known.
        noise: how ε is drawn (ours; a parameter):
            "fixed" - one ε per sample: start the sampler from `initial_state`, and since the
                denoised value of a known entry is exactly x_i, every Euler/Heun step keeps it at
                x_i + σ·ε with the same ε (churn and re-sampling add fresh noise consistently).
                The locked stems' noise then evolves like the generated ones'.
            "fresh" - a new ε at every network evaluation (RePaint-style), drawn with `generator`.
        generator: for "fresh".
    """

    def __init__(self, denoiser: StackDenoiser, known: torch.Tensor, mask: torch.Tensor, noise: str = "fixed",
                 generator: torch.Generator | None = None) -> None:
        if noise not in LOCKED_NOISE:
            raise ValueError(f"unknown locked-stem noise {noise!r}; valid names are {sorted(LOCKED_NOISE)}")
        if known.shape != mask.shape:
            raise ValueError(f"known {tuple(known.shape)} and mask {tuple(mask.shape)} must have the same shape")
        self.denoiser = denoiser
        self.mask = mask.bool()
        self.known = torch.where(self.mask, known, torch.zeros_like(known))
        self.noise = noise
        self.generator = generator

    def initial_state(self, noise: torch.Tensor, sigma_max: float) -> torch.Tensor:
        """The sampler's starting point: known entries + σ_max·ε, free entries σ_max·ε. noise: ε [B, N, T]."""
        return self.known + sigma_max * noise

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """`x` with its known entries replaced by the clean values (use on the sampler's output)."""
        return torch.where(self.mask, self.known, x)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x: [B, N, T]; sigma: [B]. Returns [B, N, T] with the known entries' denoised value = known."""
        if self.noise == "fresh":
            eps = torch.randn(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)
            x = torch.where(self.mask, self.known + sigma[:, None, None] * eps, x)
        return torch.where(self.mask, self.known, self.denoiser(x, sigma))


def _check_dirac(mixture: torch.Tensor, n_sources: int) -> None:
    if n_sources < 2:
        raise ValueError(f"the Dirac separator needs at least 2 sources, got {n_sources}")
    if mixture.ndim != 2:
        raise ValueError(f"mixture must be [B, T], got {tuple(mixture.shape)}")


class DiracConstraint:
    """MSDM's Dirac separator (METHOD.md §3.3) over the free sources [B, K−1, T].

    The constrained source is x_c = y − Σ_{k≠c} x_k, so the K sources always sum to the mixture y
    (the clean mixture at every σ, as MSDM). The free sources move along score(x_k) − score(x_c);
    in denoised form D'_k = D_k + (x_c − D_c), since
    dx_k/dσ = −σ·(s_k − s_c) = (x_k − D_k)/σ − (x_c − D_c)/σ.

    Args:
        denoiser: the per-chain (guided) denoiser over all K sources [B, K, T].
        mixture: [B, T] the mixture y.
        constrained: c, the index of the constrained source in 0..K−1.
        n_sources: K (at least 2).
    """

    def __init__(self, denoiser: StackDenoiser, mixture: torch.Tensor, constrained: int, n_sources: int) -> None:
        _check_dirac(mixture, n_sources)
        if not 0 <= constrained < n_sources:
            raise ValueError(f"constrained must be a source index in 0..{n_sources - 1}, got {constrained}")
        self.denoiser = denoiser
        self.mixture = mixture
        self.c = constrained
        self.k = n_sources

    def complete(self, free: torch.Tensor) -> torch.Tensor:
        """All K sources [B, K, T] from the K−1 free ones [B, K−1, T]; they sum to the mixture."""
        x_c = self.mixture - free.sum(dim=1)
        return torch.cat([free[:, : self.c], x_c[:, None], free[:, self.c:]], dim=1)

    def __call__(self, free: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """free: [B, K−1, T]; sigma: [B]. Returns the free sources' denoised form [B, K−1, T]."""
        x = self.complete(free)
        d = self.denoiser(x, sigma)
        correction = (x[:, self.c] - d[:, self.c])[:, None]
        d_free = torch.cat([d[:, : self.c], d[:, self.c + 1:]], dim=1)
        return d_free + correction


class ProjectedDirac:
    """The Dirac likelihood Σ_k x_k = y with every source free, over the stack [B, K, T].

    The K sources start on the plane Σ_k x_k = y (y/K plus noise projected onto it) and move
    along the score projected onto the plane: in denoised form D'_k = D_k + (y − Σ_l D_l)/K, so
    every denoised estimate sums to y and an Euler/Heun step keeps the sum where it is or pulls
    it back to y. MSDM's form (`DiracConstraint`) gives the constrained source the negated sum
    of the others' noise, √(K−1)·σ instead of σ, which makes the sum direction of its update
    K times stiffer than the rest: few steps, or many sources, overshoot and keep the starting
    noise (`gmsdi.inference.tasks.dirac_error`). Here that direction is no stiffer than any
    other, and for Gaussian sources the probability-flow ODE ends at the exact posterior
    (tests/test_inference.py).

    Args:
        denoiser: the per-chain (guided) denoiser over all K sources [B, K, T].
        mixture: [B, T] the mixture y.
        n_sources: K (at least 2).
    """

    def __init__(self, denoiser: StackDenoiser, mixture: torch.Tensor, n_sources: int) -> None:
        _check_dirac(mixture, n_sources)
        self.denoiser = denoiser
        self.mixture = mixture
        self.k = n_sources

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, K, T] moved onto the plane Σ_k x_k = y (the smallest move: equal shares)."""
        return x + ((self.mixture - x.sum(dim=1)) / self.k)[:, None]

    def initial_state(self, noise: torch.Tensor, sigma_max: float) -> torch.Tensor:
        """y/K + σ_max·ε projected onto the plane. noise: ε [B, K, T]."""
        return self.project(sigma_max * noise)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x: [B, K, T]; sigma: [B]. Returns the denoised sources [B, K, T], summing to y."""
        return self.project(self.denoiser(x, sigma))


def keep_silence(sources: torch.Tensor, mixture: torch.Tensor, sample_rate: int, threshold_db: float = -90.0,
                 frame_seconds: float = 0.01, ramp_seconds: float = 0.005) -> torch.Tensor:
    """Silences every source where the mixture is silent, keeping Σ_k sources = mixture.

    The Dirac separator only makes the sources sum to the mix; where the mix is silent they can
    still hold noise that cancels in the sum. Frames of `frame_seconds` (centred on each sample)
    whose mixture RMS is below `threshold_db` dBFS are silent (16-bit silence is −101 dBFS; −90
    leaves room for dither). A gate g is 0 there and 1 elsewhere, with `ramp_seconds` cross-fades
    placed inside the silent stretch, so that g < 1 only where the mix is silent (the first and last
    frame/2 + 2·ramp samples of a silent stretch, 15 ms by default, fade); then
    x_k ← g·x_k + (y − g·Σ_l x_l) / K, which puts back
    the (silent) difference and keeps the sum exact.

    Args:
        sources: [..., K, T] separated sources.
        mixture: [..., T] the mix they sum to.
        sample_rate: Hz.

    Returns:
        [..., K, T] sources, silent where the mix is.
    """
    t = mixture.shape[-1]
    frame = max(1, int(round(frame_seconds * sample_rate)))
    ramp = max(1, int(round(ramp_seconds * sample_rate)))
    y = mixture.reshape(-1, 1, t).float()
    power = torch.nn.functional.avg_pool1d(y.square(), frame, 1, padding=frame // 2, count_include_pad=False)[..., :t]
    loud = (power > 10 ** (threshold_db / 10)).float()
    # widen the loud region by a ramp on each side, then cross-fade: the fades fall in silence
    loud = torch.nn.functional.max_pool1d(loud, 2 * ramp + 1, 1, padding=ramp)
    gate = torch.nn.functional.avg_pool1d(loud, 2 * ramp + 1, 1, padding=ramp, count_include_pad=False)
    gate = gate.reshape(*mixture.shape[:-1], 1, t).to(sources.dtype)
    gated = sources * gate
    k = sources.shape[-2]
    return gated + (mixture.unsqueeze(-2) - gated.sum(-2, keepdim=True)) / k
