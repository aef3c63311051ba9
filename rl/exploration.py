"""How much of a game an explorer has seen, read from the console RAM after every agent step.

For every game with RAM ground truth (`keypoints.ground_truth.SUPPORTED_GAMES`): the distinct
positions of the player (its first object, e.g. Montezuma's Revenge's "player", Ms. Pac-Man's
"pacman"), binned to `bin_size` raw-screen pixels, with a visit count per bin for a heat map.
For Montezuma's Revenge also the rooms visited (RAM byte 3) and the distinct (room, x, y) cells
(x, y: RAM bytes 42 and 43, binned by `bin_size` as well), the count the exploration
literature reports.
"""

from __future__ import annotations

import numpy as np

from keypoints import ground_truth

SUMMARY = "explore.json"  # an exploration run directory's final counts (experiments.explore)
MONTEZUMA = "ALE/MontezumaRevenge-v5"
MONTEZUMA_ROOM, MONTEZUMA_X, MONTEZUMA_Y = 3, 42, 43  # RAM bytes


class Coverage:
  """Visited rooms, cells and player positions of N population members (module docstring)."""

  def __init__(self, env_id: str, num_members: int, bin_size: int = 8):
    self.env_id, self.bin_size = env_id, bin_size
    self.has_player = env_id in ground_truth.SUPPORTED_GAMES
    self.has_rooms = env_id == MONTEZUMA
    rows = -(-ground_truth.RAW_HEIGHT // bin_size)
    cols = -(-ground_truth.RAW_WIDTH // bin_size)
    self.visits = np.zeros((num_members, rows, cols), np.int64)  # player position counts
    self.rooms = [set() for _ in range(num_members)]
    self.cells = [set() for _ in range(num_members)]

  def update(self, ram: np.ndarray) -> None:
    """Records each member's state from its RAM uint8 [N, 128]."""
    ram = np.asarray(ram)
    if self.has_player:
      player = ground_truth.atari_positions(self.env_id, ram)[:, 0]  # [N, 2] raw pixels
      for member, (x, y) in enumerate(player):
        if np.isfinite(x) and np.isfinite(y):
          self.visits[member, int(y) // self.bin_size, int(x) // self.bin_size] += 1
    if self.has_rooms:
      for member, r in enumerate(ram.astype(np.int64)):
        room = int(r[MONTEZUMA_ROOM])
        self.rooms[member].add(room)
        self.cells[member].add((room, int(r[MONTEZUMA_X]) // self.bin_size,
                                int(r[MONTEZUMA_Y]) // self.bin_size))

  def counts(self) -> dict[str, np.ndarray]:
    """Per member [N]: "positions" (distinct binned player positions), and for Montezuma's
    Revenge "rooms" and "cells"."""
    out = {}
    if self.has_player:
      out["positions"] = (self.visits > 0).sum(axis=(1, 2))
    if self.has_rooms:
      out["rooms"] = np.array([len(r) for r in self.rooms])
      out["cells"] = np.array([len(c) for c in self.cells])
    return out

  def state_dict(self) -> dict[str, np.ndarray]:
    # A leading (-1, -1, -1) row keeps every array non-empty.
    cells = [np.array([(-1, -1, -1)] + sorted(c), np.int64) for c in self.cells]
    return {"visits": self.visits.copy(),
            "rooms": np.array([sorted(r) + [-1] * (256 - len(r)) for r in self.rooms],
                              np.int64).reshape(len(self.rooms), 256),
            **{f"cells_{m}": c for m, c in enumerate(cells)}}

  def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
    self.visits = np.asarray(state["visits"], np.int64).copy()
    self.rooms = [set(int(r) for r in row if r >= 0) for row in np.asarray(state["rooms"])]
    self.cells = [set(map(tuple, np.asarray(state[f"cells_{m}"], np.int64)[1:].tolist()))
                  for m in range(len(self.rooms))]
