"""api: the REST API and the web page, a Falcon WSGI app built by `create_app`.

Owns the app factory, the resources (one module per route family), request
bodies and errors as JSON, the original routes' field parsing (`seed`), the
OpenAPI document, and the static web page (`ui/`).

May import: lambdaop.app, lambdaop.engine, lambdaop.spec, lambdaop.core. It
reaches the store and the loop only through the app's service.
"""
