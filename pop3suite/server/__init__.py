"""The reference POP3/POP3S server: correct, fast, and the suite's default target.

An asyncio shell (:mod:`pop3suite.server.server`) around the sans-I/O core in
:mod:`pop3suite.proto`, with Maildir storage, accounts with hashed passwords,
and a TOML configuration.  It models the provider service described in
``shared/spec/provider-pop-service.md``.
"""
