/*
 * cmd.h: payhook's subcommands; main.c only dispatches to them.
 * Each returns the process exit status.
 */
#ifndef PAYHOOK_CMD_H
#define PAYHOOK_CMD_H

int	cmd_serve(int argc, char **argv);
int	cmd_sign(int argc, char **argv);
int	cmd_demo(int argc, char **argv);
int	cmd_config(int argc, char **argv);
int	cmd_tail(int argc, char **argv);
int	cmd_keygen(int argc, char **argv);
int	cmd_audit(int argc, char **argv);
int	cmd_journal(int argc, char **argv);

#endif
