/** Where each program's config file is by default (docs/fleet.md, docs/peel.md). */
export const MASTER_CONFIG_FILE = "/etc/zester/master.yaml";
export const PEEL_CONFIG_FILE = "/etc/zester/peel.yaml";
