/* SPDX-License-Identifier: MIT */
/* Subcommands of the `vmmu` command-line tool.  Each takes the arguments
 * after the tool's name (argv[0] is the subcommand) and returns the exit
 * status. */
#ifndef VMMU_TOOL_H
#define VMMU_TOOL_H

int vmmu_tool_demo(int argc, char **argv);
int vmmu_tool_translate(int argc, char **argv);
int vmmu_tool_run(int argc, char **argv);

#endif
