package vault

// ValueField is the field of a secret that holds the key. The package knows
// only the paths it is given: the layout of keys in the mount is the
// broker's (broker.KeyRef).
const ValueField = "api_key"
