# <workspace_id>
terraform import keybroker_workspace_settings.acme acme
