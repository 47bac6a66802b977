"""Losses of the waveform VAE: multi-resolution STFT, KL, and an EnCodec-style discriminator.

These follow the official training set-up of the Oobleck VAE (stable-audio-tools'
``AutoencoderTrainingWrapper`` with its ``mrstft`` spectral loss, ``kl`` bottleneck
loss and ``encodec`` discriminator, as the official ``config.json`` selects them):

* :class:`MultiResolutionSTFTLoss`: spectral convergence + log-magnitude L1 over
  several STFT resolutions, after a perceptual (A-weighting) FIR pre-emphasis. It is
  written here rather than taken from ``auraloss``: auraloss needs SciPy at run time to
  design its A-weighting filter (SciPy is not a training dependency) and its spectral
  convergence pools the whole batch, whereas the official training code takes it per
  clip and averages. The filter below is designed the same way in NumPy (bilinear
  transform of the analogue A-weighting curve, least-squares 101-tap linear-phase FIR);
  the tests compare its taps with SciPy's.
* ``vae_kl`` from :mod:`ezaudio.nn.oobleck` (re-exported).
* :class:`MultiScaleSTFTDiscriminator` (EnCodec, Défossez et al. 2022), the hinge
  losses and feature matching, reduced over scales as the official code did.

Audio is [B, C, T] throughout (C = 1 for EzAudio's mono VAE).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ezaudio.errors import InvalidInputError
from ezaudio.nn.oobleck import vae_kl, weight_norm_weight

# Magnitudes are sqrt(max(|X|^2, eps)), so the log never sees 0 (auraloss' eps).
MAGNITUDE_EPS = 1e-8
FIR_TAPS = 101
FREQZ_POINTS = 512
# Analogue A-weighting (IEC 61672): pole frequencies in Hz and the gain (dB) that makes
# the response 0 dB at 1 kHz.
A_WEIGHTING_POLES_HZ = (20.598997, 107.65265, 737.86223, 12194.217)
A_WEIGHTING_GAIN_DB = 1.9997
# Feature-matching normalisation: |f_real - f_fake| / (mean |f_real| + eps).
FEATURE_NORM_EPS = 1e-3
LEAKY_SLOPE = 0.2


# ---------------------------------------------------------------- A-weighting filter
def _bilinear(numerator: np.ndarray, denominator: np.ndarray, fs: float):
    """Analogue H(s) (coefficients highest power first) -> digital (b, a) in z^-1.

    Bilinear transform s = 2 fs (1 - z^-1) / (1 + z^-1): every s^p becomes
    (2 fs)^p (1 - u)^p (1 + u)^(M - p) / (1 + u)^M with u = z^-1 and M the larger
    degree; the common (1 + u)^M cancels. Returns ascending powers of u, a[0] = 1.
    """
    poly = np.polynomial.polynomial
    order = max(len(numerator), len(denominator)) - 1

    def digital(coefficients: np.ndarray) -> np.ndarray:
        out = np.zeros(order + 1)
        for power, value in enumerate(coefficients[::-1]):  # value multiplies s^power
            if value == 0:
                continue
            term = poly.polymul(poly.polypow([1.0, -1.0], power),
                                poly.polypow([1.0, 1.0], order - power))  # fmt: skip
            out[: len(term)] += value * (2.0 * fs) ** power * term
        return out

    b, a = digital(np.asarray(numerator, float)), digital(np.asarray(denominator, float))
    return b / a[0], a / a[0]


def _least_squares_fir(taps: int, bands_hz: np.ndarray, desired: np.ndarray, fs: float):
    """Linear-phase FIR minimising the squared error to a piecewise-linear response.

    ``bands_hz`` and ``desired`` are read in pairs (f_2i, f_2i+1) -> (d_2i, d_2i+1): the
    wanted amplitude is linear over each band and free between bands. With M = (taps - 1)
    / 2 and f in units of Nyquist, the amplitude is A(f) = sum_n c_n cos(pi n f), and the
    normal equations are sum_m Q[n, m] c_m = r[n] with
        Q[n, m] = (q(|n - m|) + q(n + m)) / 2,  q(k) = sum_bands int cos(pi k f) df,
        r[n]    = sum_bands int D(f) cos(pi n f) df,  D(f) = slope f + offset per band.
    The taps are h[M] = c_0 and h[M +- n] = c_n / 2.
    """
    if taps % 2 == 0:
        raise InvalidInputError(f"FIR taps must be odd, got {taps}")
    half = (taps - 1) // 2
    edges = (np.asarray(bands_hz, float) / (fs / 2)).reshape(-1, 2)  # [bands, 2]
    values = np.asarray(desired, float).reshape(-1, 2)  # [bands, 2]
    lags = np.arange(2 * half + 1)[:, None, None]  # [2M + 1, 1, 1]
    # int cos(pi k f) df = f sinc(k f)  (np.sinc(x) = sin(pi x) / (pi x))
    q = np.diff(edges * np.sinc(edges * lags), axis=2)[..., 0].sum(axis=1)  # [2M + 1]
    n = np.arange(half + 1)
    gram = 0.5 * (q[np.abs(n[:, None] - n[None, :])] + q[n[:, None] + n[None, :]])
    slope = np.diff(values, axis=1) / np.diff(edges, axis=1)  # [bands, 1]
    offset = values[:, :1] - slope * edges[:, :1]  # [bands, 1]
    k = n[:, None, None].astype(float)  # [M + 1, 1, 1]
    # int (s f + o) cos(pi k f) df = (s f + o) f sinc(k f) + s cos(pi k f) / (pi k)^2 (k > 0)
    # and s f^2 / 2 + o f for k = 0
    primitive = edges * (slope * edges + offset) * np.sinc(edges * k)  # [M + 1, bands, 2]
    primitive[0] -= slope * edges**2 / 2
    primitive[1:] += slope * np.cos(np.pi * k[1:] * edges) / (np.pi * k[1:]) ** 2
    rhs = np.diff(primitive, axis=2)[..., 0].sum(axis=1)  # [M + 1]
    try:
        c = np.linalg.solve(gram, rhs)
    except np.linalg.LinAlgError:  # pragma: no cover - rank-deficient band layouts
        c = np.linalg.lstsq(gram, rhs, rcond=None)[0]
    return np.concatenate([c[:0:-1] / 2, c[:1], c[1:] / 2])  # [taps]


@lru_cache(maxsize=8)
def a_weighting_fir(sample_rate: float, taps: int = FIR_TAPS) -> tuple[float, ...]:
    """Taps of the perceptual pre-emphasis filter (auraloss ``FIRFilter("aw")``).

    The analogue A-weighting curve goes through the bilinear transform at
    ``sample_rate``; its magnitude at 512 frequencies from 0 to Nyquist is then fitted
    by a ``taps``-long linear-phase FIR in the least-squares sense.
    """
    f1, f2, f3, f4 = (2 * math.pi * f for f in A_WEIGHTING_POLES_HZ)  # rad/s
    numerator = [f4**2 * 10 ** (A_WEIGHTING_GAIN_DB / 20), 0, 0, 0, 0]  # k s^4
    denominator = np.polymul([1, 2 * f4, f4**2], [1, 2 * f1, f1**2])
    denominator = np.polymul(np.polymul(denominator, [1, f3]), [1, f2])
    b, a = _bilinear(np.array(numerator), denominator, sample_rate)
    omega = np.pi * np.arange(FREQZ_POINTS) / FREQZ_POINTS  # [512] rad/sample, 0 .. < pi
    powers = np.exp(-1j * omega[:, None] * np.arange(len(a))[None, :])  # [512, order + 1]
    response = np.abs((powers @ b) / (powers @ a))  # |H(e^jw)|
    freqs = omega * sample_rate / (2 * np.pi)
    return tuple(_least_squares_fir(taps, freqs, response, sample_rate).tolist())


# ------------------------------------------------------------ multi-resolution STFT
def stft_magnitude(audio: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """[N, T] -> |STFT| [N, n_fft // 2 + 1, frames], centred (reflect padding), floored."""
    spec = torch.stft(
        audio, n_fft, hop, window.shape[-1], window, center=True, pad_mode="reflect",
        return_complex=True,
    )  # fmt: skip
    return (spec.real.square() + spec.imag.square()).clamp(min=MAGNITUDE_EPS).sqrt()


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude distance, averaged over resolutions.

    For each resolution r, with magnitudes X = |STFT_r(x)| and Y = |STFT_r(y)| of
    every clip and channel (after the optional A-weighting pre-emphasis of both):

        SC_r     = mean_clips ( ||Y - X||_F / ||Y||_F )        (Arik et al., 2018)
        LogMag_r = mean |log Y - log X|
        loss     = 1/R sum_r (SC_r + LogMag_r)

    ``forward(x, y)``: y is the reference of spectral convergence. The official
    trainer calls it as (real audio, reconstruction), so its SC is normalised by the
    reconstruction's spectrum; :class:`~ezaudio.train.vae_trainer.VAETrainer` does the
    same. It is 0 for identical signals and symmetric in its log term.
    """

    def __init__(
        self,
        fft_sizes: Sequence[int],
        hop_sizes: Sequence[int],
        win_lengths: Sequence[int],
        sample_rate: int | None = None,
        perceptual_weighting: bool = True,
    ) -> None:
        super().__init__()
        if not len(fft_sizes) == len(hop_sizes) == len(win_lengths) or not fft_sizes:
            raise InvalidInputError("fft_sizes, hop_sizes and win_lengths must be equally long")
        if any(w > n for w, n in zip(win_lengths, fft_sizes)):
            raise InvalidInputError("every STFT window must be at most its FFT size")
        self.fft_sizes = tuple(fft_sizes)
        self.hop_sizes = tuple(hop_sizes)
        for index, length in enumerate(win_lengths):
            self.register_buffer(f"window{index}", torch.hann_window(length), persistent=False)
        self.perceptual_weighting = perceptual_weighting
        if perceptual_weighting:
            if not sample_rate:
                raise InvalidInputError("perceptual weighting needs the sample rate")
            taps = torch.tensor(a_weighting_fir(float(sample_rate)), dtype=torch.float32)
            self.register_buffer("fir", taps.view(1, 1, -1), persistent=False)  # [1, 1, 101]

    def prefilter(self, audio: torch.Tensor) -> torch.Tensor:
        """A-weighting FIR of every channel: [B, C, T] -> [B, C, T] (zero-padded ends)."""
        batch, channels, length = audio.shape
        flat = audio.reshape(batch * channels, 1, length)
        return F.conv1d(flat, self.fir, padding=self.fir.shape[-1] // 2).view(batch, channels, -1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y [B, C, T] -> scalar."""
        if x.shape != y.shape or x.dim() != 3:
            raise InvalidInputError(
                f"MR-STFT needs two [batch, channels, samples] tensors of one shape, "
                f"got {list(x.shape)} and {list(y.shape)}"
            )
        if self.perceptual_weighting:
            x, y = self.prefilter(x), self.prefilter(y)
        x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])  # [B*C, T]
        total = x.new_zeros(())
        for index, (n_fft, hop) in enumerate(zip(self.fft_sizes, self.hop_sizes)):
            window = getattr(self, f"window{index}")
            mag_x = stft_magnitude(x, n_fft, hop, window)  # [B*C, F, frames]
            mag_y = stft_magnitude(y, n_fft, hop, window)
            convergence = (
                torch.linalg.vector_norm(mag_y - mag_x, dim=(-2, -1))
                / torch.linalg.vector_norm(mag_y, dim=(-2, -1))
            ).mean()
            log_magnitude = (mag_y.log() - mag_x.log()).abs().mean()
            total = total + convergence + log_magnitude
        return total / len(self.fft_sizes)


# ------------------------------------------------------------------- discriminator
class WNConv2d(nn.Module):
    """Weight-normalised ``Conv2d``: w = g v / ||v||; v [out, in, kh, kw], g [out, 1, 1, 1]."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        dilation: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
    ) -> None:
        super().__init__()
        plain = nn.Conv2d(in_channels, out_channels, kernel_size)  # torch's default init
        self.weight_v = nn.Parameter(plain.weight.detach().clone())
        dims = (1, 2, 3)
        self.weight_g = nn.Parameter(plain.weight.detach().norm(p=2, dim=dims, keepdim=True))
        self.bias = nn.Parameter(plain.bias.detach().clone())
        self.stride, self.dilation, self.padding = stride, dilation, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = weight_norm_weight(self.weight_g, self.weight_v)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation)


class STFTDiscriminator(nn.Module):
    """One scale of the EnCodec MS-STFT discriminator.

    audio [B, C, T] -> complex STFT (Hann window, no centring, divided by the window's
    L2 norm) -> [B, 2C, frames, F] (real parts, then imaginary parts) -> a 3x9 conv, three
    3x9 convs with time dilations 1, 2, 4 and frequency stride 2, a 3x3 conv (each
    followed by LeakyReLU(0.2) and kept as a feature map) -> 3x3 conv to the logits
    [B, 1, frames, F']. All convs are weight-normalised except the first, as in EnCodec.
    """

    def __init__(
        self,
        filters: int,
        n_fft: int,
        hop_length: int,
        win_length: int,
        in_channels: int = 1,
        kernel_size: tuple[int, int] = (3, 9),
        dilations: Sequence[int] = (1, 2, 4),
        stride: tuple[int, int] = (1, 2),
    ) -> None:
        super().__init__()
        if win_length > n_fft:
            raise InvalidInputError(f"discriminator window {win_length} exceeds n_fft {n_fft}")
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        kt, kf = kernel_size
        self.convs = nn.ModuleList(
            [nn.Conv2d(2 * in_channels, filters, kernel_size, padding=(kt // 2, kf // 2))]
        )
        for dilation in dilations:
            self.convs.append(
                WNConv2d(filters, filters, kernel_size, stride=stride, dilation=(dilation, 1),
                         padding=(dilation * (kt - 1) // 2, (kf - 1) // 2))
            )  # fmt: skip
        self.convs.append(WNConv2d(filters, filters, (kt, kt), padding=(kt // 2, kt // 2)))
        self.post = WNConv2d(filters, 1, (kt, kt), padding=(kt // 2, kt // 2))

    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, C, T] -> [B, 2C, frames, n_fft // 2 + 1], frames = 1 + (T - n_fft) // hop."""
        batch, channels, length = audio.shape
        if length < self.n_fft:
            raise InvalidInputError(
                f"the discriminator's {self.n_fft}-point STFT needs at least {self.n_fft} "
                f"samples, got {length}"
            )
        spec = torch.stft(
            audio.reshape(batch * channels, length).float(), self.n_fft, self.hop_length,
            self.window.shape[-1], self.window, center=False, return_complex=True,
        )  # [B*C, F, frames]  # fmt: skip
        spec = spec / self.window.square().sum().sqrt()
        spec = spec.view(batch, channels, *spec.shape[-2:])  # [B, C, F, frames]
        return torch.cat([spec.real, spec.imag], dim=1).transpose(-1, -2)  # [B, 2C, frames, F]

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """audio [B, C, T] -> (logits [B, 1, frames, F'], 5 maps [B, filters, frames, F_l])."""
        z = self.spectrogram(audio)
        features = []
        for conv in self.convs:
            z = F.leaky_relu(conv(z), LEAKY_SLOPE)
            features.append(z)
        return self.post(z), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """EnCodec's MS-STFT discriminator: one :class:`STFTDiscriminator` per resolution.

    ``forward(audio [B, C, T])`` -> (logits per scale, feature maps per scale).
    """

    def __init__(
        self,
        filters: int,
        n_ffts: Sequence[int],
        hop_lengths: Sequence[int],
        win_lengths: Sequence[int],
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        if not len(n_ffts) == len(hop_lengths) == len(win_lengths) or not n_ffts:
            raise InvalidInputError("n_ffts, hop_lengths and win_lengths must be equally long")
        self.scales = nn.ModuleList(
            STFTDiscriminator(filters, n_fft, hop, win, in_channels)
            for n_fft, hop, win in zip(n_ffts, hop_lengths, win_lengths)
        )

    def forward(self, audio: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        logits, features = [], []
        for scale in self.scales:
            scale_logits, scale_features = scale(audio)
            logits.append(scale_logits)
            features.append(scale_features)
        return logits, features

    def frozen(self, audio: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """The same outputs with the parameters detached: gradients reach ``audio`` only.

        The generator's adversarial terms go through this, so they never touch the
        discriminator's gradients (nor its DDP reducer) and need no requires_grad toggling.
        """
        params = {name: p.detach() for name, p in self.named_parameters()}
        return functional_call(self, params, (audio,))


# ---------------------------------------------------------------- adversarial losses
# Hinge GAN (Lim & Ye, 2017), as the official trainer reduces it over K scales:
#   L_D = sum_k [ mean relu(1 - D_k(x)) + mean relu(1 + D_k(x_hat)) ]
#   L_G = sum_k [ -mean D_k(x_hat) ]
def discriminator_hinge_loss(
    real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Discriminator hinge loss, summed over scales (logits of any shape per scale)."""
    return sum(
        (F.relu(1 - real).mean() + F.relu(1 + fake).mean()
         for real, fake in zip(real_logits, fake_logits)),
        torch.zeros((), device=real_logits[0].device),
    )  # fmt: skip


def generator_adversarial_loss(fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Generator hinge-GAN loss -mean D_k(x_hat), summed over scales."""
    return sum(
        (-fake.mean() for fake in fake_logits), torch.zeros((), device=fake_logits[0].device)
    )


# Feature matching over K scales with L feature maps each (f = D_k^l):
#   L_FM = sum_k 1/L sum_l mean|f(x) - f(x_hat)|                       (official trainer)
#   L_FM = sum_k 1/L sum_l mean|f(x) - f(x_hat)| / (mean|f(x)| + 1e-3)   (normalize=True,
#          the EnCodec paper's relative L1, with stable-audio-tools' epsilon)
def feature_matching_loss(
    real_features: Sequence[Sequence[torch.Tensor]],
    fake_features: Sequence[Sequence[torch.Tensor]],
    normalize: bool = False,
) -> torch.Tensor:
    """L1 distance of the discriminator's feature maps, averaged per scale, summed over scales."""
    total = torch.zeros((), device=real_features[0][0].device)
    for real_maps, fake_maps in zip(real_features, fake_features):
        scale = 0.0
        for real, fake in zip(real_maps, fake_maps):
            distance = (real - fake).abs().mean()
            if normalize:
                distance = distance / (real.abs().mean() + FEATURE_NORM_EPS)
            scale = scale + distance
        total = total + scale / len(real_maps)
    return total


def split_batch(tensors, size: int):
    """Split every tensor of a (nested) list along dim 0 at ``size``: -> (first, rest)."""
    if isinstance(tensors, torch.Tensor):
        return tensors[:size], tensors[size:]
    pairs = [split_batch(t, size) for t in tensors]
    return [p[0] for p in pairs], [p[1] for p in pairs]


__all__ = [
    "MultiResolutionSTFTLoss",
    "MultiScaleSTFTDiscriminator",
    "STFTDiscriminator",
    "WNConv2d",
    "a_weighting_fir",
    "discriminator_hinge_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "split_batch",
    "stft_magnitude",
    "vae_kl",
]
