using VirtioPanic.Device.Protocol;

namespace VirtioPanic.Device.Queues;

// What a queue worker may ask of the device that owns it: the negotiated features and four
// reports. Nothing here touches a queue, so a worker stays the only consumer of its queue
// (QueueWorker's design), and nothing calls back into a worker. WatchdogDevice implements it
// (WatchdogDevice.Queues.cs); the workers' wire decoding and their loop live in the workers.
//
// Threads: every member is called on the worker's runner thread (a vCPU, the timer thread, a pool
// thread or the vhost-user loop thread), or on the thread resetting the device for records a
// reset drains; none may throw, and none may wait for the worker.
internal interface IQueueWorkerHost
{
    // Read in OnStart, with the queue quiescent.
    WatchdogFeatures NegotiatedFeatures { get; }

    // The worker has stopped its queue for good until the next Start (a ring error, WDT-DEV-32; an
    // oversized chain, WDT-DEV-37; a rejected heartbeat, WDT-DEV-6): DEVICE_NEEDS_RESET and a
    // protocol-error event.
    void OnQueueStopped(int queueIndex, WatchdogProtocolError error, string detail);

    // A guest mistake the queue survives: a protocol-error event, no DEVICE_NEEDS_RESET.
    void OnProtocolError(int queueIndex, WatchdogProtocolError error, string detail, ushort? declaredType = null);

    // A validated record (WDT-DEV-21, -25): reported (journaled on acceptance, then published)
    // before the worker completes its buffer. Returns the host event's sequence for the status.
    long OnRecord(in RecordHeader header, ReadOnlySpan<byte> copy, WatchdogEventSource source);

    // A pass threw (a device bug or a transport callback that threw, never guest data).
    void OnWorkerFault(int queueIndex, Exception exception);
}
