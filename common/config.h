/*
 * config.h: payhook's configuration, driven by one static table (name,
 * type, default, range, flags, help) as tmux's options_table does. Parsing,
 * validation, --help, the example file and docs/configuration.md all come
 * from that table. Main thread, at start-up (and SIGHUP for secret files).
 */
#ifndef PAYHOOK_CONFIG_H
#define PAYHOOK_CONFIG_H

#include <stdint.h>
#include <stdio.h>

enum config_durability { CONFIG_DURABILITY_FULL, CONFIG_DURABILITY_PROCESS };

/* Every setting, already parsed and range-checked. Strings are owned. */
struct config {
	char	*listen;
	char	*webhook_path;
	char	*tls_cert_file;
	char	*tls_key_file;
	char	*signing_secret_file;
	int64_t	 max_body_bytes;
	int64_t	 max_header_bytes;
	int64_t	 max_connections;
	int64_t	 request_timeout_ms;
	char	*admin_listen;
	char	*state_dir;
	int	 durability;		/* enum config_durability */
	int64_t	 journal_max_bytes;
	int64_t	 retention_ms;
	char	*api_base_url;
	char	*api_key_file;
	char	*api_ca_file;
	int	 cross_check;
	int64_t	 cross_check_give_up_ms;
	int64_t	 api_pool_size;
	int64_t	 api_rate_limit;
	int64_t	 api_timeout_ms;
	int64_t	 api_connect_timeout_ms;
	char	*publish_endpoint;
	char	*replay_endpoint;
	char	*curve_secret_key_file;
	char	*curve_clients_file;
	int	 include_pii;
	int	 log_level;		/* enum log_level */
};

/*
 * Build a configuration from the table defaults, then the file at path
 * (NULL: none), then PAYHOOK_* environment variables (envp: NULL-terminated
 * "K=V" strings; NULL: none). On the first bad value returns NULL and one
 * line in *cause naming the key, the value (never a secret's content), where
 * it came from and what was expected.
 */
struct config *config_load(const char *path, char *const *envp, char **cause);
void	config_free(struct config *);

/* Split "host:port" (IPv6 as "[::1]:80"); 0 or -1. host gets <= 256 bytes. */
int	config_split_addr(const char *addr, char *host, size_t hostlen,
	    int *port);

/* Writers driven by the table. */
void	config_print_help(FILE *);		/* for serve --help */
void	config_print_example(FILE *);		/* deploy/payhook.conf.example */
void	config_print_markdown(FILE *);		/* docs/configuration.md */
/* Print the effective configuration (secret files by path only). */
void	config_print_effective(const struct config *, FILE *);

#endif
