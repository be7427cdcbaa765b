/* The [tls] configuration section shared by the daemons: checks that name
 * the keys an operator wrote, and the mapping onto struct fv_mqtt_opts. */
#include <errno.h>
#include <stdio.h>

#include "fedvigil/mqtt.h"
#include "fedvigil/util.h"

int fv_mqtt_tls_check(const struct fv_mqtt_tls *t, const char *uri, const char *broker_key,
		      char *err, size_t errlen)
{
	bool any = t->ca_file[0] || t->cert_file[0] || t->key_file[0] || !t->verify;

	if (!fv_mqtt_uri_is_tls(uri)) {
		if (any) {
			snprintf(err, errlen,
				 "TLS is configured (a CA, certificate or key file, or verify off) "
				 "but %s = %s does not use TLS: use an ssl:// (or mqtts://, wss://) "
				 "URI",
				 broker_key, uri);
			return -EINVAL;
		}
		return 0;
	}
	if (t->key_file[0] && !t->cert_file[0]) {
		snprintf(err, errlen, "a TLS key file is set without a certificate file");
		return -EINVAL;
	}
	if (t->cert_file[0])
		return fv_file_check_private(t->key_file[0] ? t->key_file : t->cert_file,
					     t->key_file[0] ? "TLS private key" : "TLS certificate with key",
					     err, errlen);
	return 0;
}

void fv_mqtt_tls_apply(const struct fv_mqtt_tls *t, struct fv_mqtt_opts *o)
{
	o->ca_file = t->ca_file[0] ? t->ca_file : NULL;
	o->cert_file = t->cert_file[0] ? t->cert_file : NULL;
	o->key_file = t->key_file[0] ? t->key_file : NULL;
	o->insecure = !t->verify;
}
