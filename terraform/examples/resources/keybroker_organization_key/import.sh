# organization/<organization_id>/<provider_id>/<key_id>
terraform import keybroker_organization_key.acme_corp_openai organization/acme-corp/openai/shared
