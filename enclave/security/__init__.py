"""Access control, audit and cost controls for Enclave.

* :mod:`enclave.security.keys` -- API keys and the :class:`Principal` they authenticate.
* :mod:`enclave.security.policy` -- document ACL policy: path globs -> groups.
* :mod:`enclave.security.access` -- what a principal may see (the store prefilter).
* :mod:`enclave.security.audit` -- the hash-chained audit log.
* :mod:`enclave.security.rate_limits` -- per-key requests-per-minute and daily token budgets.
* :mod:`enclave.security.injection` -- flags instruction-like text in untrusted documents.
* :mod:`enclave.security.redact` -- opt-in PII redaction before embedding.
* :mod:`enclave.security.services` -- everything a server process needs, built from the
  settings.

The HTTP side (the FastAPI dependency, the audit middleware) lives in ``server/``: this package
does not depend on a web framework.

Import the submodules directly: this package imports nothing, so ``enclave --help`` stays fast.
"""
