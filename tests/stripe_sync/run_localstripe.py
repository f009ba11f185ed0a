"""Run localstripe (GPL; never imported by syncd) bound to loopback, state in memory only.

Started by the tests as a separate process with the interpreter of localstripe's own
virtualenv: ``python run_localstripe.py --port N``. The stock ``localstripe`` command binds
every interface and pickles its state to a fixed file in the temp dir shared by parallel runs.
"""

import argparse

from aiohttp import web
from localstripe import resources
from localstripe.server import app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    resources.Store.dump_to_disk = lambda self: None  # no shared pickle file
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
