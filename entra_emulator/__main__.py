"""``python -m entra_emulator``: run the emulator as a process until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from entra_emulator.seed import CLIENT_ID, DEFAULT_SEED, TENANT_ID
from entra_emulator.server import EmulatorServer


def _limit(text: str) -> tuple[int, float]:
    """``5/10`` -> (5, 10.0): requests per window in seconds."""
    count, _, window = text.partition("/")
    try:
        parsed = (int(count), float(window or 10))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected COUNT/SECONDS, e.g. 5/10, not {text!r}"
        ) from exc
    if parsed[0] < 1 or parsed[1] <= 0:
        raise argparse.ArgumentTypeError("count and window must be positive")
    return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m entra_emulator",
        description="Local HTTPS stand-in for Entra ID sign-in and the Microsoft Graph slice "
        "the MFA helpdesk portal uses (loopback only).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path("var/emulator"),
        help="folder for the CA, certificates and signing key",
    )
    parser.add_argument("--users", type=int, default=200, help="people in the seeded tenant")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--reports-limit",
        type=_limit,
        default=(5, 10.0),
        help="reports class budget per app, COUNT/SECONDS (default 5/10)",
    )
    parser.add_argument(
        "--identity-limit",
        type=_limit,
        default=(3500, 10.0),
        help="identity class budget per app, COUNT/SECONDS (default 3500/10)",
    )
    parser.add_argument("--no-throttle", action="store_true", help="switch throttling off")
    parser.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        help="extra redirect URI for the portal app (may repeat)",
    )
    parser.add_argument(
        "--client-cert",
        action="append",
        default=[],
        type=Path,
        help="PEM certificate registered as a credential of the portal app (may repeat)",
    )
    parser.add_argument(
        "--licence",
        choices=("free", "p1", "p2"),
        default="p2",
        help="the tenant's Microsoft Entra ID licence (PIM needs p2; default p2)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for cert in args.client_cert:
        if not cert.is_file():
            print(f"--client-cert: no such file {cert}", file=sys.stderr)
            return 2
    try:
        server = EmulatorServer(
            state_dir=args.state_dir,
            host=args.host,
            port=args.port,
            users=args.users,
            seed=args.seed,
            reports_limit=args.reports_limit,
            identity_limit=args.identity_limit,
            throttle_enabled=not args.no_throttle,
            redirect_uris=args.redirect_uri,
            client_cert_paths=args.client_cert,
            licence=args.licence,
        )
    except (ValueError, OSError) as exc:
        print(f"cannot start the emulator: {exc}", file=sys.stderr)
        return 2

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            # shutdown() waits for serve_forever to return: call it from another thread.
            threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(
        f"Entra emulator at {server.base_url} (tenant {TENANT_ID}, client {CLIENT_ID}, "
        f"{len(server.tenant.users)} users)",
        flush=True,
    )
    print(f"CA certificate: {server.ca_path}", flush=True)
    print(
        f"Discovery: {server.base_url}/{TENANT_ID}/v2.0/.well-known/openid-configuration",
        flush=True,
    )
    server.serve_forever()
    print("Entra emulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
