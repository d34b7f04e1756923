/*
 * Unit tests for common/util's thread_start: a service's SIGTERM must reach
 * the main thread (which waits for it and drains), never a worker, which
 * would die of it. The valgrind run of a live mailer-spy was killed that
 * way when its delivery workers were started with the caller's mask.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/util.h"

struct seen {
	int term_blocked, int_blocked, usr1_blocked;
};

static void *
look(void *arg)
{
	struct seen *s = arg;
	sigset_t cur;

	pthread_sigmask(SIG_SETMASK, NULL, &cur);
	s->term_blocked = sigismember(&cur, SIGTERM);
	s->int_blocked = sigismember(&cur, SIGINT);
	s->usr1_blocked = sigismember(&cur, SIGUSR1);
	return NULL;
}

static void
test_a_started_thread_takes_no_signals(void **state)
{
	struct seen s = { 0, 0, 0 };
	sigset_t none, before, after;
	pthread_t t;

	(void)state;
	/* Even from a caller that blocks nothing (the state a program is
	 * in before its server blocks SIGTERM for sigwait). */
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, &before);
	thread_start(&t, look, &s);
	pthread_join(t, NULL);
	assert_int_equal(s.term_blocked, 1);
	assert_int_equal(s.int_blocked, 1);
	assert_int_equal(s.usr1_blocked, 1);
	/* The caller's own mask is left as it was. */
	pthread_sigmask(SIG_SETMASK, NULL, &after);
	assert_int_equal(sigismember(&after, SIGTERM), 0);
	pthread_sigmask(SIG_SETMASK, &before, NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_started_thread_takes_no_signals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
