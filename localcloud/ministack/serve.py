"""MiniStack as the local cloud runs it: the pinned MiniStack's own server, with its ASGI app behind
localcloud/request_guard.py.

MiniStack answers `Access-Control-Allow-Origin: *` and takes an unauthenticated `text/plain` cross-origin POST
as a Lambda API call, so any web page could create and invoke a function; it also answers any `Host`. Its CORS
handling is spread over many places, so rather than patch each one, its whole app is wrapped: the guard refuses
foreign `Host`s and origins before MiniStack sees the request. Everything else is MiniStack's own `main()`.

    .venv-ministack/bin/python -m localcloud.ministack.serve     # what localcloud/launcher.py starts
"""

from __future__ import annotations

from localcloud.request_guard import RequestGuard


def main() -> None:
    import ministack.app as ministack_app

    # main() serves the module-level `app`, looked up when it runs, so replacing it here is enough.
    ministack_app.app = RequestGuard(ministack_app.app)
    ministack_app.main()


if __name__ == "__main__":
    main()
