/* demo.c: placeholder until the demo lands in this change. */
#include "cmd/cmd.h"
int
cmd_demo(int argc, char **argv)
{
	return 2;
}
