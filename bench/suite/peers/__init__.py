"""One module per framework, all with the interface of `base.Peer`; `PEERS` in run order."""

from __future__ import annotations

from suite.peers.bare_peer import BarePeer
from suite.peers.base import Env, Peer, Unavailable
from suite.peers.celery_peer import CeleryPeer
from suite.peers.dramatiq_peer import DramatiqPeer
from suite.peers.fleet_peer import FleetPeer, FleetSqlitePeer
from suite.peers.huey_peer import HueyPeer
from suite.peers.rq_peer import RqPeer

#: the order of every round: fleet first, then the peers, the embedded broker, the floor
PEERS: list[type[Peer]] = [FleetPeer, CeleryPeer, HueyPeer, DramatiqPeer, RqPeer,
                           FleetSqlitePeer, BarePeer]

__all__ = ["PEERS", "Env", "Peer", "Unavailable"]
