"""Which share of a list of inputs this process takes under `python -m paddle.distributed.launch` (no framework).

The launcher tells every process its rank and the number of processes of the whole job, over all nodes, in
PADDLE_TRAINER_ID and PADDLE_TRAINERS_NUM (what paddle.distributed.get_rank / get_world_size read). Every rank
sorts the same list and takes every world-th item from its rank on, as evaluation and training split samples:
the shares are disjoint, together they are the list, their sizes differ by at most one, and they depend only on
the list and the number of ranks.
"""

import os
from typing import List, Sequence, Tuple, TypeVar

T = TypeVar("T")


def launched() -> Tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside a launched job."""
    return int(os.environ.get("PADDLE_TRAINER_ID", "0")), int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def share(items: Sequence[T], rank: int, world: int) -> List[T]:
    """The items rank takes of world ranks: every world-th one from index rank on."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not one of the {world} ranks 0..{world - 1}")
    return list(items[rank::world])
