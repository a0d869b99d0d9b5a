// SPDX-License-Identifier: GPL-2.0
/*
 * Test-only guest module for VirtioPanic's real-kernel tests. It binds the virtio device ID of a
 * QEMU vhost-user carrier stub (vhost-user-gpio-pci, ID 41, by default) and reports on the
 * console what the guest sees through that stub: offered and negotiated feature bits, the
 * configuration bytes before and after a driver write, the queue sizes, and the reply to one
 * two-buffer request on queue 0. The host test compares these with what our back end served.
 */
#include <linux/completion.h>
#include <linux/module.h>
#include <linux/scatterlist.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>

#ifndef VP_CARRIER_ID
#define VP_CARRIER_ID 41
#endif

#define VP_CONFIG_BYTES 8

struct vp_carrier {
	struct virtqueue *vqs[2];
	struct completion replied;
	u8 request[8];
	u8 reply[8];
};

static void vp_request_done(struct virtqueue *vq)
{
	struct vp_carrier *carrier = vq->vdev->priv;
	unsigned int len;

	if (virtqueue_get_buf(vq, &len))
		complete(&carrier->replied);
}

static void vp_event_done(struct virtqueue *vq)
{
}

static int vp_carrier_probe(struct virtio_device *vdev)
{
	vq_callback_t *callbacks[2] = { vp_request_done, vp_event_done };
	static const char * const names[2] = { "request", "event" };
	struct scatterlist out, in, *sgs[2];
	struct vp_carrier *carrier;
	u8 config[VP_CONFIG_BYTES];
	int err;

	carrier = devm_kzalloc(&vdev->dev, sizeof(*carrier), GFP_KERNEL);
	if (!carrier)
		return -ENOMEM;
	vdev->priv = carrier;
	init_completion(&carrier->replied);

	pr_warn("VP-CARRIER device-features %llx\n", vdev->config->get_features(vdev));
	pr_warn("VP-CARRIER negotiated %llx\n", vdev->features);

	virtio_cread_bytes(vdev, 0, config, sizeof(config));
	pr_warn("VP-CARRIER config %*phN\n", VP_CONFIG_BYTES, config);
	virtio_cwrite8(vdev, 0, config[0] ^ 0xff);
	virtio_cread_bytes(vdev, 0, config, sizeof(config));
	pr_warn("VP-CARRIER config-after-write %*phN\n", VP_CONFIG_BYTES, config);

	err = virtio_find_vqs(vdev, 2, carrier->vqs, callbacks, names, NULL);
	if (err) {
		pr_warn("VP-CARRIER find-vqs-failed %d\n", err);
		return err;
	}
	pr_warn("VP-CARRIER queue-sizes %u %u\n",
		virtqueue_get_vring_size(carrier->vqs[0]),
		virtqueue_get_vring_size(carrier->vqs[1]));

	virtio_device_ready(vdev);

	memset(carrier->request, 0x5a, sizeof(carrier->request));
	sg_init_one(&out, carrier->request, sizeof(carrier->request));
	sg_init_one(&in, carrier->reply, sizeof(carrier->reply));
	sgs[0] = &out;
	sgs[1] = &in;
	err = virtqueue_add_sgs(carrier->vqs[0], sgs, 1, 1, carrier, GFP_KERNEL);
	if (err) {
		pr_warn("VP-CARRIER add-failed %d\n", err);
		return 0;
	}
	virtqueue_kick(carrier->vqs[0]);
	if (!wait_for_completion_timeout(&carrier->replied, 5 * HZ))
		pr_warn("VP-CARRIER reply-timeout\n");
	else
		pr_warn("VP-CARRIER reply %*phN\n", (int)sizeof(carrier->reply), carrier->reply);
	return 0;
}

static void vp_carrier_config_changed(struct virtio_device *vdev)
{
	u8 config[VP_CONFIG_BYTES];

	virtio_cread_bytes(vdev, 0, config, sizeof(config));
	pr_warn("VP-CARRIER config-changed %*phN\n", VP_CONFIG_BYTES, config);
}

static void vp_carrier_remove(struct virtio_device *vdev)
{
	virtio_reset_device(vdev);
	vdev->config->del_vqs(vdev);
}

static const struct virtio_device_id vp_carrier_ids[] = {
	{ VP_CARRIER_ID, VIRTIO_DEV_ANY_ID },
	{ 0 },
};
MODULE_DEVICE_TABLE(virtio, vp_carrier_ids);

/* Device-type feature bits 0-3: ask for all, to see which the carrier lets through. */
static unsigned int vp_carrier_features[] = { 0, 1, 2, 3 };

static struct virtio_driver vp_carrier_driver = {
	.feature_table = vp_carrier_features,
	.feature_table_size = ARRAY_SIZE(vp_carrier_features),
	.driver.name = KBUILD_MODNAME,
	.driver.owner = THIS_MODULE,
	.id_table = vp_carrier_ids,
	.probe = vp_carrier_probe,
	.remove = vp_carrier_remove,
	.config_changed = vp_carrier_config_changed,
};
module_virtio_driver(vp_carrier_driver);

MODULE_DESCRIPTION("VirtioPanic test: what a guest sees through a vhost-user carrier stub");
MODULE_LICENSE("GPL");
