/* The coordinator's side of signatures and epochs (coordinator/coord.c, no
 * broker): updates verified against sign.agent_keys, the signing key
 * loaded and checked, the epoch chosen at a fresh start, kept across
 * restarts and raised by --reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coord.h"
#include "fedvigil/sign.h"
#include "fedvigil/util.h"
#include "fedvigil/wire.h"

#define FLEET "stest"

struct fixture {
	char dir[64];             /* state_dir and keys (mkdtemp) */
	char keys[96];            /* sign.agent_keys */
	struct coord_config cfg;
	struct coord *co;
	struct fv_sign_key ka, kb; /* a-agent's and b-agent's keys */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[700], p[160], q[160];

	assert_non_null(f);
	fv_log_setup(FV_LOG_ERR, "test_coord_sign");
	snprintf(f->dir, sizeof(f->dir), "/tmp/fvcsignXXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->keys, sizeof(f->keys), "%s/agents", f->dir);
	assert_int_equal(mkdir(f->keys, 0755), 0);
	assert_int_equal(fv_sign_keygen(&f->ka), 0);
	assert_int_equal(fv_sign_keygen(&f->kb), 0);
	/* Only the public halves go to the coordinator's directory. */
	snprintf(p, sizeof(p), "%s/a.key", f->dir);
	snprintf(q, sizeof(q), "%s/a-agent.pub", f->keys);
	assert_int_equal(fv_sign_key_save(p, q, &f->ka, "a-agent", false, err, sizeof(err)), 0);
	snprintf(p, sizeof(p), "%s/b.key", f->dir);
	snprintf(q, sizeof(q), "%s/b-agent.pub", f->keys);
	assert_int_equal(fv_sign_key_save(p, q, &f->kb, "b-agent", false, err, sizeof(err)), 0);

	assert_int_equal(coord_config_defaults(&f->cfg, err, sizeof(err)), 0);
	fv_strlcpy(f->cfg.fleet, FLEET, sizeof(f->cfg.fleet));
	fv_strlcpy(f->cfg.state_dir, f->dir, sizeof(f->cfg.state_dir));
	fv_strlcpy(f->cfg.hidden, "3", sizeof(f->cfg.hidden));
	fv_strlcpy(f->cfg.sign_agent_keys, f->keys, sizeof(f->cfg.sign_agent_keys));
	f->cfg.window = 2;
	f->cfg.channels = 2;
	f->cfg.min_agents = 2;
	f->cfg.rounds = 2;
	assert_int_equal(coord_config_finish(&f->cfg, err, sizeof(err)), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	coord_free(f->co);
	fv_sign_key_wipe(&f->ka);
	fv_sign_key_wipe(&f->kb);
	snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static struct coord_info info(const struct coord *co)
{
	struct coord_info i;

	coord_get_info(co, &i);
	return i;
}

static void birth(struct coord *co, const char *agent)
{
	char topic[FV_TOPIC_MAX];
	const char *p = "{\"state\":\"online\"}";

	assert_non_null(fv_topic_agent(topic, FLEET, agent, "state"));
	coord_on_message(co, topic, p, strlen(p));
}

/* A statistics update from `agent`, signed with k (NULL: unsigned). */
static void send_stats(struct coord *co, const char *agent, const struct fv_sign_key *k)
{
	struct fv_update u;
	char topic[FV_TOPIC_MAX];
	uint8_t *buf = NULL;
	size_t len = 0;

	memset(&u, 0, sizeof(u));
	u.h.schema = FV_SCHEMA_VERSION;
	fv_strlcpy(u.h.fleet, FLEET, sizeof(u.h.fleet));
	fv_strlcpy(u.h.sender, agent, sizeof(u.h.sender));
	u.kind = FV_ROUND_STATS;
	u.n_samples = 2;
	fv_hist_init(&u.hist);
	u.n_channels = 2;
	u.stats = calloc(2, sizeof(*u.stats));
	assert_non_null(u.stats);
	for (uint32_t c = 0; c < 2; c++) {
		fv_chstats_init(&u.stats[c]);
		fv_chstats_add(&u.stats[c], 1.0 + c);
		fv_chstats_add(&u.stats[c], 3.0 + c);
	}
	assert_int_equal(fv_update_encode(&u, &buf, &len), 0);
	if (k)
		assert_int_equal(fv_msg_sign(FV_MSG_UPDATE, &buf, &len, k), 0);
	assert_non_null(fv_topic_update(topic, FLEET, 0, agent));
	coord_on_message(co, topic, buf, len);
	free(buf);
	fv_update_clear(&u);
}

static void start(struct fixture *f)
{
	coord_on_connected(f->co);
	birth(f->co, "a-agent");
	birth(f->co, "b-agent");
	coord_tick(f->co, fv_now_mono_ms() + 1000, 200); /* past the settle time */
	assert_int_equal(info(f->co).phase, COORD_COLLECT);
}

static void test_agent_signatures(void **state)
{
	struct fixture *f = *state;
	struct coord_info in;
	struct fv_sign_key stranger;

	f->co = coord_new(&f->cfg, NULL, false);
	assert_non_null(f->co);
	start(f);
	assert_int_equal(fv_sign_keygen(&stranger), 0);

	send_stats(f->co, "a-agent", NULL); /* unsigned */
	assert_int_equal(info(f->co).rejected[FV_REJ_SIGNATURE], 1);
	send_stats(f->co, "a-agent", &f->kb); /* b-agent's key */
	assert_int_equal(info(f->co).rejected[FV_REJ_SIGNATURE], 2);
	send_stats(f->co, "a-agent", &stranger);
	assert_int_equal(info(f->co).rejected[FV_REJ_SIGNATURE], 3);
	send_stats(f->co, "z-agent", &stranger); /* no key file for it */
	assert_int_equal(info(f->co).rejected[FV_REJ_SIGNATURE], 4);
	coord_on_message(f->co, "fedvigil/v1/" FLEET "/round/0/update/a-agent", "junk", 4);
	in = info(f->co);
	assert_int_equal(in.rejected[FV_REJ_MALFORMED], 1); /* framing checked first */
	assert_int_equal(in.n_answered, 0);
	/* Nothing else was counted: signatures are checked before decoding. */
	for (int r = 0; r < FV_REJ__MAX; r++)
		if (r != FV_REJ_SIGNATURE && r != FV_REJ_MALFORMED)
			assert_int_equal(in.rejected[r], 0);

	send_stats(f->co, "a-agent", &f->ka);
	assert_int_equal(info(f->co).n_answered, 1);
	send_stats(f->co, "b-agent", &f->kb); /* the round closes */
	in = info(f->co);
	assert_int_equal(in.round, 1);
	assert_non_null(in.model);
	assert_int_equal(in.model->n_agents, 2);

	fv_sign_key_wipe(&stranger);
}

static void test_epochs(void **state)
{
	struct fixture *f = *state;
	uint64_t e0, e1, now = (uint64_t)fv_now_wall_ms();
	struct coord_info in;

	/* A fresh start: the wall clock in ms. */
	f->co = coord_new(&f->cfg, NULL, false);
	assert_non_null(f->co);
	e0 = info(f->co).epoch;
	assert_true(e0 >= now && e0 < now + 60000);
	start(f);
	send_stats(f->co, "a-agent", &f->ka);
	send_stats(f->co, "b-agent", &f->kb);
	in = info(f->co);
	assert_non_null(in.model);
	assert_int_equal(in.model->epoch, e0);
	coord_free(f->co);

	/* A restart keeps it (from the state file). */
	f->co = coord_new(&f->cfg, NULL, false);
	assert_non_null(f->co);
	assert_int_equal(info(f->co).epoch, e0);
	assert_int_equal(info(f->co).model->epoch, e0);
	coord_free(f->co);

	/* --reset: newer than the file's, even if the clock went back. */
	char path[160];
	struct fv_coord_state st;
	uint8_t *buf;
	size_t len;

	memset(&st, 0, sizeof(st));
	st.round = 0;
	st.epoch = now + 3600 * 1000; /* an hour ahead of the clock */
	st.have_model = false;
	st.kind = FV_ROUND_STATS;
	assert_int_equal(fv_state_encode(&st, &buf, &len), 0);
	snprintf(path, sizeof(path), "%s/coordinator.state", f->dir);
	assert_int_equal(fv_file_write_atomic(path, buf, len), 0);
	free(buf);
	f->co = coord_new(&f->cfg, NULL, true);
	assert_non_null(f->co);
	e1 = info(f->co).epoch;
	assert_int_equal(e1, now + 3600 * 1000 + 1);
	coord_free(f->co);

	/* A state file from before epochs loads as epoch 0. */
	st.epoch = 0;
	assert_int_equal(fv_state_encode(&st, &buf, &len), 0);
	assert_int_equal(fv_file_write_atomic(path, buf, len), 0);
	free(buf);
	f->co = coord_new(&f->cfg, NULL, false);
	assert_non_null(f->co);
	assert_int_equal(info(f->co).epoch, 0);
}

static void test_signing_key(void **state)
{
	struct fixture *f = *state;
	char err[700];

	snprintf(f->cfg.sign_key_file, sizeof(f->cfg.sign_key_file), "%s/a.key", f->dir);
	assert_int_equal(coord_config_finish(&f->cfg, err, sizeof(err)), 0);
	f->co = coord_new(&f->cfg, NULL, false);
	assert_non_null(f->co);
	assert_true(info(f->co).signing);
	coord_free(f->co);
	f->co = NULL;

	/* Loose permissions: refused by the config check, naming the key. */
	assert_int_equal(chmod(f->cfg.sign_key_file, 0644), 0);
	assert_int_equal(coord_config_finish(&f->cfg, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "sign.key_file"));
	assert_non_null(strstr(err, "(mode 0644)"));
	assert_null(coord_new(&f->cfg, NULL, false));
	/* A public key given as the private one: refused. */
	assert_int_equal(chmod(f->cfg.sign_key_file, 0600), 0);
	snprintf(f->cfg.sign_key_file, sizeof(f->cfg.sign_key_file), "%s/a-agent.pub", f->keys);
	assert_int_equal(chmod(f->cfg.sign_key_file, 0600), 0);
	assert_null(coord_new(&f->cfg, NULL, false));
	/* agent_keys must be a directory. */
	f->cfg.sign_key_file[0] = '\0';
	snprintf(f->cfg.sign_agent_keys, sizeof(f->cfg.sign_agent_keys), "%s/a.key", f->dir);
	assert_int_equal(coord_config_finish(&f->cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a directory"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_agent_signatures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_epochs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_signing_key, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
