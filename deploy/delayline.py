"""A userspace netem: forwards Ethernet frames between pairs of interfaces after a fixed delay.

``python -m deploy.delayline --delay 0.05 PORT:PEER [PORT:PEER …]`` (in the switch namespace).
Drill 4 puts 50 ms between the hosts with ``tc qdisc … netem delay 50ms`` where the kernel has
netem (CONFIG_NET_SCH_NETEM); some kernels (this project's CI VMs among them) are built
without it. Then each app host's switch port is taken off its bridge, a veth pair is put in its
place, and this process copies frames between the port and the pair, each one ``delay`` later,
in both directions: the same effect on the wire as netem on both ends of the link.

Packet sockets with PACKET_VNET_HDR carry the kernel's offload metadata (GSO size, partial
checksums) along with each frame, so TCP's 64 KB segments cross as they are and come out
right on the other side, as they do through a VM's tap device.
"""

import argparse
import asyncio
import signal
import socket
import sys

SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
ETH_P_ALL = 0x0003
FRAME_MAX = 65536 + 64


def packet_socket(interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)  # not the frames we send ourselves
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sock.bind((interface, 0))
    sock.setblocking(False)
    return sock


class Pump:
    """Frames read from ``source`` are written to ``target`` ``delay`` seconds later, in order."""

    def __init__(self, loop, source: socket.socket, target: socket.socket, delay: float):
        self.loop, self.source, self.target, self.delay = loop, source, target, delay
        self.dropped = 0

    def on_readable(self) -> None:
        while True:
            try:
                frame = self.source.recv(FRAME_MAX)
            except BlockingIOError:
                return
            if self.delay:
                self.loop.call_later(self.delay, self.send, frame)
            else:
                self.send(frame)

    def send(self, frame: bytes) -> None:
        try:
            self.target.send(frame)
        except OSError:
            self.dropped += 1  # a full queue drops, as a congested link would


async def serve(pairs: list[tuple[str, str]], delay: float) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    for port, peer in pairs:
        a, b = packet_socket(port), packet_socket(peer)
        loop.add_reader(a, Pump(loop, a, b, delay).on_readable)
        loop.add_reader(b, Pump(loop, b, a, delay).on_readable)
    print(f"ready: {len(pairs)} links, {delay * 1000:g} ms each way", flush=True)
    await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.delayline", description=__doc__.split("\n")[0])
    parser.add_argument("--delay", type=float, required=True, help="seconds, each way")
    parser.add_argument("pairs", nargs="+", help="PORT:PEER interface pairs")
    args = parser.parse_args()
    pairs = [tuple(pair.split(":", 1)) for pair in args.pairs]
    asyncio.run(serve(pairs, args.delay))
    sys.exit(0)


if __name__ == "__main__":
    main()
