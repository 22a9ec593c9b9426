/* SPDX-License-Identifier: MIT */
/*
 * wake-pingpong: what one hop between two threads costs on this machine,
 * between every pair of the CPUs it may use. Two processes pinned to CPUs
 * A and B pass one byte back and forth over a Unix socketpair, each
 * sleeping in read() until the other writes: every hop wakes a sleeping
 * task, on the other CPU or on the same one. An NBD round trip between a
 * client and dionbd makes two such hops (the reply, then the next request)
 * that fio on the file does not; on a VM where waking an idle vCPU is
 * slow, they are the gap (bench/README.md, "One connection's requests
 * travel together").
 *
 *   wake-pingpong [-n ROUNDS] [CPU...]   (default: every CPU it may run on)
 *
 * Prints, per pair, the median and 90th percentile of the round trip (two
 * hops) and the mean time write() took in the sender (the part of a wake
 * the waker pays itself). Exit 0, 1 on failure.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* One byte each way, exactly; 0 or -1. */
static int
hop(int fd, bool send_first, char *c)
{
	if (send_first && write(fd, c, 1) != 1)
		return -1;
	if (read(fd, c, 1) != 1)
		return -1;
	if (!send_first && write(fd, c, 1) != 1)
		return -1;
	return 0;
}

/* Measure rounds round trips between CPUs a (us) and b (the echo). */
static int
measure(int a, int b, unsigned int rounds, uint64_t *rtt, double *write_us)
{
	uint64_t in_write = 0;
	int sv[2], status;
	pid_t pid;
	char c = 0;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(sv[0]);
		if (pin(b) < 0)
			_exit(1);
		for (unsigned int i = 0; i < rounds + 100; i++)
			if (hop(sv[1], false, &c) < 0)
				_exit(1);
		_exit(0);
	}
	close(sv[1]);
	if (pin(a) < 0)
		goto fail;
	/* warm-up: both pinned and each asleep in read() between hops */
	for (int i = 0; i < 100; i++)
		if (hop(sv[0], true, &c) < 0)
			goto fail;
	for (unsigned int i = 0; i < rounds; i++) {
		uint64_t t0 = now_ns(), t1;

		if (write(sv[0], &c, 1) != 1)
			goto fail;
		t1 = now_ns();
		if (read(sv[0], &c, 1) != 1)
			goto fail;
		rtt[i] = now_ns() - t0;
		in_write += t1 - t0;
	}
	close(sv[0]);
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		return -1;
	*write_us = (double)in_write / 1e3 / rounds;
	return 0;
fail:
	close(sv[0]);
	waitpid(pid, &status, 0);
	return -1;
}

int
main(int argc, char **argv)
{
	unsigned int rounds = 20000;
	int cpus[CPU_SETSIZE], ncpus = 0, opt;
	uint64_t *rtt;

	while ((opt = getopt(argc, argv, "n:")) != -1) {
		if (opt != 'n' || (rounds = (unsigned int)strtoul(optarg, NULL, 10)) == 0) {
			fprintf(stderr, "usage: wake-pingpong [-n ROUNDS] [CPU...]\n");
			return 1;
		}
	}
	if (optind < argc) {
		for (; optind < argc && ncpus < CPU_SETSIZE; optind++)
			cpus[ncpus++] = atoi(argv[optind]);
	} else {
		cpu_set_t set;

		if (sched_getaffinity(0, sizeof(set), &set) < 0) {
			perror("wake-pingpong: sched_getaffinity");
			return 1;
		}
		for (int i = 0; i < CPU_SETSIZE && ncpus < 8; i++)
			if (CPU_ISSET(i, &set))
				cpus[ncpus++] = i;
	}
	rtt = calloc(rounds, sizeof(*rtt));
	if (!rtt)
		return 1;
	printf("%-5s %-5s %12s %12s %12s\n", "cpu A", "cpu B", "p50 rtt us", "p90 rtt us",
	       "write() us");
	for (int i = 0; i < ncpus; i++) {
		for (int j = i; j < ncpus; j++) {
			double wus;

			if (measure(cpus[i], cpus[j], rounds, rtt, &wus) < 0) {
				fprintf(stderr, "wake-pingpong: CPUs %d and %d: %s\n", cpus[i],
					cpus[j], strerror(errno));
				free(rtt);
				return 1;
			}
			qsort(rtt, rounds, sizeof(*rtt), cmp_u64);
			printf("%-5d %-5d %12.1f %12.1f %12.1f\n", cpus[i], cpus[j],
			       (double)rtt[rounds / 2] / 1e3, (double)rtt[rounds * 9 / 10] / 1e3,
			       wus);
		}
	}
	free(rtt);
	return 0;
}
