"""Scripts run by the MCP servers' own environments (``.venv-mcp/``, made by ``bash .ci/install``),
never imported by the project: each calls its server's own code, JSON on stdin and stdout
(``replicator.demo.mcp_ask`` runs them; so do the integration tests)."""
