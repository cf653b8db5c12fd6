# hosted/<provider_id>/<key_id>
terraform import keybroker_hosted_key.openai_a hosted/openai/platform-a
