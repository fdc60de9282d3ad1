/** The daemon's config file, unless a command is told otherwise. */
export const DEFAULT_CONFIG = '/etc/piota/config.json';

/** --config, else PIOTA_CONFIG, else /etc/piota/config.json. */
export function configPath(flag: string | undefined): string {
  return flag ?? process.env.PIOTA_CONFIG ?? DEFAULT_CONFIG;
}
