# <workspace_id>/<provider_id>; the key itself is never read back.
terraform import keybroker_workspace_key.acme_openai acme/openai
