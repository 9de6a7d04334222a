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
        theta, phi = self.pos_ascension_theta(centres), self.pos_ascension_phi(centres)
        sq = theta.pow(2).sum(-1, keepdim=True) + phi.pow(2).sum(-1).unsqueeze(-2) - 2.0 * theta @ phi.transpose(-1, -2)
        dist = sq.clamp(min=0).sqrt() / scale
        pos = self.pos_to_head(dist.unsqueeze(-1)).permute(0, 3, 1, 2)
        sim = self.fc_rn_theta(x) @ self.fc_rn_phi(x).transpose(-1, -2) / scale
        app = self.app_to_head(sim.unsqueeze(-1)).permute(0, 3, 1, 2)
        return pos, app

    def forward_shared(
        self, crop_x: torch.Tensor, gene_x: torch.Tensor, crop_centres: torch.Tensor, gene_centres: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, S) of the node sets [crop_i, genes…] with the gene nodes shared by every candidate:
        crop_x [N, node_dim], gene_x [G, node_dim], centres [N, 2] and [G, 2]. The Linear layers run
        once per distinct node instead of once per (candidate, node). Returns P, S [N, n, n, heads]
        (heads last: the layout `GraphTransformer.forward_shared` reads)."""
        scale = math.sqrt(self.relation_dim)
        theta = expand_nodes(self.pos_ascension_theta(crop_centres), self.pos_ascension_theta(gene_centres))
        phi = expand_nodes(self.pos_ascension_phi(crop_centres), self.pos_ascension_phi(gene_centres))
        sq = theta.pow(2).sum(-1, keepdim=True) + phi.pow(2).sum(-1).unsqueeze(-2) - 2.0 * pairwise_dot(theta, phi)
        dist = sq.clamp(min=0).sqrt() / scale
        sim = pairwise_dot(
            expand_nodes(self.fc_rn_theta(crop_x), self.fc_rn_theta(gene_x)),
            expand_nodes(self.fc_rn_phi(crop_x), self.fc_rn_phi(gene_x)),
        ) / scale
        return self.pos_to_head(dist.unsqueeze(-1)), self.app_to_head(sim.unsqueeze(-1))


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
        return self.attend(self.to_q(x_ma), self.to_kv(x_norm), bias)

    def attend(self, q: torch.Tensor, kv: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """q [N, r, dim] for r query nodes, kv [N, n, 2·dim] for all n nodes, bias [N, heads, r, n]."""
        n_cand, n_query, dim = q.shape
        k, v = kv.chunk(2, dim=-1)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(n_cand, t.shape[1], self.heads, dim // self.heads).transpose(1, 2)

        q, k, v = split(q), split(k), split(v)
        attn = (q @ k.transpose(-1, -2) * self.scale + bias).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(n_cand, n_query, dim)
        return self.to_out(out)

    def attend_small(self, q: torch.Tensor, kv: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """`attend` with heads-last bias [N, r, n, heads]; broadcasts instead of tiny GEMMs for small n."""
        if kv.shape[1] > SMALL_GRAPH:
            return self.attend(q, kv, bias.permute(0, 3, 1, 2))
        n_cand, n_query, dim = q.shape
        heads = (self.heads, dim // self.heads)
        k, v = (t.unflatten(-1, heads) for t in kv.chunk(2, dim=-1))  # [N, n, heads, d]
        q = q.unflatten(-1, heads)  # [N, r, heads, d]
        logits = (q.unsqueeze(2) * k.unsqueeze(1)).sum(-1) * self.scale + bias  # [N, r, n, heads]
        attn = logits.softmax(dim=2)
        out = sum_of_products(attn.unsqueeze(-1), v.unsqueeze(1))  # [N, r, heads, d]
        return self.to_out(out.flatten(-2))


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

    def forward_shared(
        self,
        crop_x: torch.Tensor,
        gene_x: torch.Tensor,
        pos: torch.Tensor,
        app: torch.Tensor,
        gene_log_count: torch.Tensor,
        first_only: bool = False,
    ) -> torch.Tensor:
        """The same layers for node sets [crop_i, genes…] whose gene nodes start out shared.

        crop_x [N, dim]; gene_x [G, dim] the distinct gene nodes, gene `g` standing for
        exp(gene_log_count[g]) identical copies; pos/app [N, n, n, heads] over the n = 1+G nodes (from
        `GraphConstructor.forward_shared`). Returns [N, n, dim], or [N, 1, dim] (node 0 only) when
        `first_only`. Inference only (eval mode: dropout would treat the copies differently).

        Exact rewrites of `forward`: copies of a node have identical inputs and biases in every layer,
        so a softmax over them equals one over the distinct nodes with log(count) added to their logits;
        in the first layer the gene rows of x are the same for every candidate, so their
        LayerNorm/to_kv/fc_gcn run once (fc_gcn has no bias: fc_gcn(G @ x) = G @ fc_gcn(x)); in the last
        layer with `first_only`, only node 0's query, output and feed-forward are computed. With so few
        nodes per candidate, the node-by-node products are broadcasts rather than batches of tiny GEMMs.
        """
        log_count = torch.cat([gene_log_count.new_zeros(1), gene_log_count]).to(pos.dtype)  # per key node
        graph = (pos.mean(dim=-1) * app.mean(dim=-1) + log_count).softmax(dim=-1)  # [N, n, n]
        bias = pos + app + log_count.unsqueeze(-1)  # [N, n (query), n (key), heads]
        x: torch.Tensor | None = None  # [N, n, dim] once the gene rows depend on the candidate
        depth = len(self.layers)
        for i, (attn_block, ff_block) in enumerate(self.layers):
            attn, ff = attn_block.fn, ff_block.fn
            rows = slice(0, 1) if first_only and i == depth - 1 else slice(None)
            if x is None:
                gcn = mix(graph[:, rows], expand_nodes(self.fc_gcn(crop_x), self.fc_gcn(gene_x)))
                kv = expand_nodes(attn.fn.to_kv(attn.norm(crop_x)), attn.fn.to_kv(attn.norm(gene_x)))
                x_rows = expand_nodes(crop_x, gene_x)[:, rows]
            else:
                gcn = self.fc_gcn(mix(graph[:, rows], x))
                kv = attn.fn.to_kv(attn.norm(x))
                x_rows = x[:, rows]
            x_ma = F.relu(self.nl_gcn(gcn))
            x_rows = x_rows + attn.fn.attend_small(attn.fn.to_q(x_ma), kv, bias[:, rows])
            x = x_rows + ff.fn(ff.norm(x_rows))
        assert x is not None
        return x


# Up to this many nodes per candidate, node-by-node products are broadcasts; beyond, batched GEMMs.
SMALL_GRAPH = 4


def pairwise_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[N, n, d] · [N, m, d] → [N, n, m] dot products of every pair of nodes."""
    if max(a.shape[1], b.shape[1]) > SMALL_GRAPH:
        return a @ b.transpose(-1, -2)
    return (a.unsqueeze(2) * b.unsqueeze(1)).sum(-1)


def mix(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """[N, r, n] weights over [N, n, d] node values → [N, r, d] (a batched matrix product)."""
    if values.shape[1] > SMALL_GRAPH:
        return weights @ values
    return sum_of_products(weights.unsqueeze(-1), values.unsqueeze(1))


def sum_of_products(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`(a * b).sum(2)` for a few nodes along dim 2 (both of that size), as one product per node added
    up in a fixed order, without a reduction over a strided dimension (which on these shapes costs more
    than the products)."""
    out = a.select(2, 0) * b.select(2, 0)
    for j in range(1, a.shape[2]):
        out = out + a.select(2, j) * b.select(2, j)
    return out


def expand_nodes(crop: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
    """[N, ...] crop rows and [G, ...] shared gene rows → [N, 1+G, ...] node sets (genes broadcast)."""
    return torch.cat([crop.unsqueeze(1), genes.unsqueeze(0).expand(crop.shape[0], *genes.shape)], dim=1)
