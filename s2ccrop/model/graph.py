"""The spatial-semantic graph of S2CNet: a crop node related to its visual-gene nodes.

Shapes: N candidates, n = D + 1 nodes per candidate (node 0 is the crop), width 256, 4 heads.
Module and parameter names mirror the reference state_dict (see SPEC §2.5–2.6).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GraphConstructor(nn.Module):
    """Builds the positional bias P and appearance bias S, each [N, heads, n, n]."""

    def __init__(self, node_dim: int = 256, relation_dim: int = 256, heads: int = 4) -> None:
        super().__init__()
        self.relation_dim = relation_dim
        self.fc_rn_theta = nn.Linear(node_dim, relation_dim)
        self.fc_rn_phi = nn.Linear(node_dim, relation_dim)
        self.pos_ascension_theta = nn.Linear(2, relation_dim)
        self.pos_ascension_phi = nn.Linear(2, relation_dim)
        self.pos_to_head = nn.Linear(1, heads)
        self.app_to_head = nn.Linear(1, heads)

    def forward(self, x: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, n, node_dim]; centres [N, n, 2] = (cx/W, cy/H). Returns (P, S)."""
        scale = math.sqrt(self.relation_dim)
        theta = self.pos_ascension_theta(centres)
        phi = self.pos_ascension_phi(centres)
        sq = (
            theta.pow(2).sum(-1, keepdim=True)
            + phi.pow(2).sum(-1).unsqueeze(-2)
            - 2.0 * theta @ phi.transpose(-1, -2)
        )
        dist = sq.clamp(min=0).sqrt() / scale
        pos = self.pos_to_head(dist.unsqueeze(-1)).permute(0, 3, 1, 2)

        sim = self.fc_rn_theta(x) @ self.fc_rn_phi(x).transpose(-1, -2) / scale
        app = self.app_to_head(sim.unsqueeze(-1)).permute(0, 3, 1, 2)
        return pos, app


class _PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn


class _Residual(nn.Module):
    """Holds a pre-normed block; exists so parameter names match the reference (``layers.0.0.fn.norm``)."""

    def __init__(self, fn: _PreNorm) -> None:
        super().__init__()
        self.fn = fn


class Attention(nn.Module):
    """Multi-head attention whose queries come from the aggregated graph features."""

    def __init__(self, dim: int = 256, heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        # The reference scales by the full width, not the head width (SPEC §2.6).
        self.scale = dim**-0.5
        self.to_kv = nn.Linear(dim, dim * 2, bias=False)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x_norm: torch.Tensor, x_ma: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n_cand, n_nodes, dim = x_norm.shape
        k, v = self.to_kv(x_norm).chunk(2, dim=-1)
        q = self.to_q(x_ma)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(n_cand, n_nodes, self.heads, dim // self.heads).transpose(1, 2)

        q, k, v = split(q), split(k), split(v)
        attn = (q @ k.transpose(-1, -2) * self.scale + bias).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(n_cand, n_nodes, dim)
        return self.to_out(out)


class FeedForward(nn.Module):
    def __init__(self, dim: int = 256, hidden: int = 1024, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GraphTransformer(nn.Module):
    """`depth` layers of graph aggregation + biased attention + feed-forward (SPEC §2.6)."""

    def __init__(self, dim: int = 256, depth: int = 2, heads: int = 4, mlp_dim: int = 1024, dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    _Residual(_PreNorm(dim, Attention(dim, heads, dropout))),
                    _Residual(_PreNorm(dim, FeedForward(dim, mlp_dim, dropout))),
                ]
            )
            for _ in range(depth)
        )
        # Shared by every layer, as in the reference.
        self.fc_gcn = nn.Linear(dim, dim, bias=False)
        self.nl_gcn = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, app: torch.Tensor) -> torch.Tensor:
        graph = (pos.mean(dim=1) * app.mean(dim=1)).softmax(dim=-1)
        bias = pos + app
        for attn_block, ff_block in self.layers:
            attn, ff = attn_block.fn, ff_block.fn
            x_ma = F.relu(self.nl_gcn(self.fc_gcn(graph @ x)))
            x = x + attn.fn(attn.norm(x), x_ma, bias)
            x = x + ff.fn(ff.norm(x))
        return x
