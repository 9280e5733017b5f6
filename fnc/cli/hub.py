"""``fnc-reid push``: publish a checkpoint folder to the Hugging Face Hub."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from fnc.cli._common import EXIT_FAILED, EXIT_OK, add_command, one_line, reported
from fnc.engine.publish import push_checkpoint

__all__ = ["add_push_parser", "register", "run_push"]

# huggingface_hub's HTTP client (httpx or its fork) raises these for an unreachable Hub; matched
# by class name so the command does not depend on which client the installed version uses.
_NETWORK_ERRORS = frozenset({"TransportError", "ConnectError", "ConnectTimeout", "NetworkError", "TimeoutException"})


def _is_network_error(error: BaseException) -> bool:
    return isinstance(error, (ConnectionError, TimeoutError)) or any(
        c.__name__ in _NETWORK_ERRORS for c in type(error).__mro__
    )


def add_push_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``fnc-reid push CHECKPOINT REPO_ID [--private] [--message M] [--dataset D]``."""
    p = add_command(
        subparsers,
        "push",
        "publish a checkpoint to the Hugging Face Hub",
        "Upload a checkpoint folder (written by fnc-reid train or save_pretrained) to a Hub model repo, "
        "with config.json, model.safetensors and a generated re-ID model card. Anyone can then load it "
        "with fnc.create_model('hf-hub:REPO_ID').",
        "The token comes from HF_TOKEN or `hf auth login`; HF_ENDPOINT selects another Hub.\n\n"
        "example:\n  fnc-reid push runs/veri/best my-org/fnc-se-resnext101-veri776",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint folder")
    p.add_argument("repo_id", metavar="REPO_ID", help="org/name on the Hub (created if needed)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--message", "-m", dest="commit_message", help="commit message")
    p.add_argument("--dataset", help="training dataset for the model card (default: from the checkpoint)")
    p.add_argument("--license", help="license of the weights for the model card")
    p.set_defaults(func=run_push)
    return p


@reported("push")
def run_push(args: argparse.Namespace) -> int:
    """Publish the folder with :func:`~fnc.engine.publish.push_checkpoint`; prints the commit URL."""
    try:
        url = push_checkpoint(
            args.checkpoint,
            args.repo_id,
            dataset=args.dataset,
            license=args.license,
            private=args.private,
            commit_message=args.commit_message,
        )
    except HfHubHTTPError as e:
        print(f"fnc-reid push: failed: the Hub refused the upload: {one_line(e)}", file=sys.stderr)
        return EXIT_FAILED
    except OfflineModeIsEnabled:
        print(
            "fnc-reid push: failed: HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it to push",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except Exception as e:
        if not _is_network_error(e):
            raise
        print(
            f"fnc-reid push: failed: cannot reach the Hub at {hf_constants.ENDPOINT} ({type(e).__name__}: "
            f"{one_line(e)}); check the network, or HF_ENDPOINT if you use another Hub",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(f"pushed {args.checkpoint} to {args.repo_id}: {url}")
    print(f"load it with: fnc.create_model('hf-hub:{args.repo_id}')")
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``push`` to ``subparsers``."""
    add_push_parser(subparsers)
