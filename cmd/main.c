/*
 * main.c: payhook's entry point. Picks the subcommand and nothing else.
 */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"

static const struct {
	const char	*name;
	int		(*fn)(int, char **);
	const char	*help;
} main_commands[] = {
	{ "serve", cmd_serve, "run the service: accept, verify, journal, "
	  "cross-check and publish webhooks" },
	{ "demo", cmd_demo, "start a simulator, the service and a subscriber "
	  "on loopback and show events flowing" },
	{ "tail", cmd_tail, "print published events as JSON lines, in seq "
	  "order, filling gaps from replay" },
	{ "keygen", cmd_keygen, "write a CURVE key pair for the ZeroMQ "
	  "endpoints" },
	{ "audit", cmd_audit, "keep a tamper-evident audit log of every event, "
	  "or verify one" },
	{ "journal", cmd_journal, "inspect the journal: pending and quarantined "
	  "rows, errors, re-drive, backup" },
	{ "sign", cmd_sign, "print the Pay-Signature of a body read on stdin" },
	{ "config", cmd_config, "print the example config file or its docs "
	  "(generated from the config table)" },
};

static void
main_usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: payhook <command> [options]\n\n"
	    "payhook receives GOV.UK Pay webhooks, proves them genuine, "
	    "journals them\ndurably, cross-checks them with the GOV.UK Pay API "
	    "and publishes normalised\nevents over ZeroMQ.\n\ncommands:\n");
	for (i = 0; i < sizeof main_commands / sizeof main_commands[0]; i++)
		fprintf(f, "  %-8s %s\n", main_commands[i].name,
		    main_commands[i].help);
	fprintf(f, "\n`payhook <command> --help` describes each command.\n");
}

int
main(int argc, char **argv)
{
	size_t i;

	if (argc < 2) {
		main_usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		main_usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 ||
	    strcmp(argv[1], "version") == 0) {
		printf("payhook %s\n", PAYHOOK_VERSION);
		return 0;
	}
	for (i = 0; i < sizeof main_commands / sizeof main_commands[0]; i++) {
		if (strcmp(argv[1], main_commands[i].name) == 0)
			return main_commands[i].fn(argc - 1, argv + 1);
	}
	fprintf(stderr, "payhook: unknown command \"%.40s\"\n\n", argv[1]);
	main_usage(stderr);
	return 2;
}
