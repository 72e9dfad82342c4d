"""MiniStack as the local cloud runs it: the pinned MiniStack's own server, with its ASGI app behind
localcloud/request_guard.py.

MiniStack answers `Access-Control-Allow-Origin: *` and takes an unauthenticated `text/plain` cross-origin POST
as a Lambda API call, so any web page could create and invoke a function; it also answers any `Host`. Its CORS
handling is spread over many places, so rather than patch each one, its whole app is wrapped: the guard refuses
foreign `Host`s and origins before MiniStack sees the request. MiniStack's `AUTH` mode does not check signatures
made with its root key or `test`/`test`, so the signature check is ours too (`SignatureCheck`): every request but
the health check must be signed with the install's keys (localcloud/credentials.py). Innermost,
`DurableWrites` (localcloud/ministack/durability.py) answers a change of a service's definitions only once that
service's state is on disk, as MiniStack alone does only at a clean shutdown, so a `kill -9` loses no
acknowledged write. Everything else is MiniStack's own `main()`.

    .venv-ministack/bin/python -m localcloud.ministack.serve     # what localcloud/launcher.py starts
"""

from __future__ import annotations

from localcloud import sigv4
from localcloud.credentials import Credentials
from localcloud.ministack.durability import DurableWrites
from localcloud.request_guard import ASGIApp, RequestGuard, SignatureCheck

HEALTH_PATH = "/_ministack/health"


def signature_check(app: ASGIApp) -> SignatureCheck:
    keys = Credentials.from_env().signing_keys()
    return SignatureCheck(app, keys, exempt=sigv4.exempt_paths([HEALTH_PATH]))


def main() -> None:
    import ministack.app as ministack_app

    # main() serves the module-level `app`, looked up when it runs, so replacing it here is enough.
    ministack_app.app = RequestGuard(signature_check(DurableWrites(ministack_app.app)))
    ministack_app.main()


if __name__ == "__main__":
    main()
