#!/usr/bin/python3
# Copied from the workplace test peers (../shared/testpeers/camera.py) so that the project's tests
# run without ../shared; started by tests/field.rs.
"""Fake IP camera: a real RTSP server (GStreamer gst-rtsp-server 1.22 via PyGObject).

Serves rtsp://127.0.0.1:PORT/MOUNT with
  * stream=0  video H.264 (videotestsrc is-live, x264enc zerolatency, rtph264pay)
  * stream=1  application VND.ONVIF.METADATA/90000 (unless --no-metadata): ONVIF
              tt:MetadataStream XML documents (VideoAnalytics/Frame/Object with a moving
              bounding box, plus tt:Event NotificationMessage for
              tns1:RuleEngine/CellMotionDetector/Motion toggling IsMotion).

GStreamer 1.22 in Debian has no ONVIF metadata payloader (rtponvifmetadatapay lives in
gst-plugins-rs), so the metadata RTP packets are built here by hand (RFC 3550 header,
PT 107, 90 kHz clock, marker bit on the last packet of each XML document) and pushed
through an appsrc named "pay1" whose caps are application/x-rtp,... -- gst-rtsp-server
treats any element named payN as the payloader of stream N and builds the SDP from its caps.

Must run with Debian's /usr/bin/python3 (python3-gi, gir1.2-gst-rtsp-server-1.0).
Prints "READY rtsp://..." on stdout once the server socket is listening.
"""
import argparse
import datetime
import math
import os
import random
import signal
import struct
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

META_PT = 107
META_CAPS = ("application/x-rtp,media=(string)application,clock-rate=(int)90000,"
             "encoding-name=(string)VND.ONVIF.METADATA,payload=(int)%d" % META_PT)
MTU_PAYLOAD = 1400


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def frame_doc(n, w, h):
    # normalized ONVIF coordinates are -1..1; move an object along a circle
    a = n / 10.0
    cx, cy = 0.5 * math.cos(a), 0.5 * math.sin(a)
    l, r, t, b = cx - 0.1, cx + 0.1, cy + 0.15, cy - 0.15
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<tt:MetadataStream xmlns:tt="http://www.onvif.org/ver10/schema">'
        "<tt:VideoAnalytics>"
        f'<tt:Frame UtcTime="{utc_now()}">'
        f'<tt:Object ObjectId="{1 + (n // 50) % 3}">'
        "<tt:Appearance>"
        "<tt:Shape>"
        f'<tt:BoundingBox left="{l:.3f}" top="{t:.3f}" right="{r:.3f}" bottom="{b:.3f}"/>'
        f'<tt:CenterOfGravity x="{cx:.3f}" y="{cy:.3f}"/>'
        "</tt:Shape>"
        '<tt:Class><tt:Type Likelihood="0.9">Human</tt:Type></tt:Class>'
        "</tt:Appearance>"
        "</tt:Object>"
        "</tt:Frame>"
        "</tt:VideoAnalytics>"
        "</tt:MetadataStream>"
    )


def motion_doc(is_motion):
    v = "true" if is_motion else "false"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<tt:MetadataStream xmlns:tt="http://www.onvif.org/ver10/schema">'
        "<tt:Event>"
        '<wsnt:NotificationMessage xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" '
        'xmlns:tns1="http://www.onvif.org/ver10/topics">'
        '<wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">'
        "tns1:RuleEngine/CellMotionDetector/Motion</wsnt:Topic>"
        "<wsnt:Message>"
        f'<tt:Message UtcTime="{utc_now()}" PropertyOperation="Changed">'
        "<tt:Source>"
        '<tt:SimpleItem Name="VideoSourceConfigurationToken" Value="VideoSourceToken"/>'
        '<tt:SimpleItem Name="VideoAnalyticsConfigurationToken" Value="VideoAnalyticsToken"/>'
        '<tt:SimpleItem Name="Rule" Value="MyMotionDetectorRule"/>'
        "</tt:Source>"
        f'<tt:Data><tt:SimpleItem Name="IsMotion" Value="{v}"/></tt:Data>'
        "</tt:Message>"
        "</wsnt:Message>"
        "</wsnt:NotificationMessage>"
        "</tt:Event>"
        "</tt:MetadataStream>"
    )


class MetadataFeeder:
    """Pushes hand-made RTP packets carrying ONVIF XML into an appsrc."""

    def __init__(self, appsrc, interval_ms, motion_every):
        self.appsrc = appsrc
        self.seq = random.randint(0, 0xFFFF)
        self.ssrc = random.randint(1, 0xFFFFFFFF)
        self.ts_base = random.randint(0, 0xFFFFFFFF)
        self.n = 0
        self.motion = False
        self.motion_every = motion_every
        self.stopped = False
        self.source_id = GLib.timeout_add(interval_ms, self.tick)
        self.tick()  # push at once: rtsp-media waits for a first buffer on every stream

    def packets(self, xml, rtp_ts):
        data = xml.encode("utf-8")
        chunks = [data[i:i + MTU_PAYLOAD] for i in range(0, len(data), MTU_PAYLOAD)]
        for i, chunk in enumerate(chunks):
            marker = 0x80 if i == len(chunks) - 1 else 0
            hdr = struct.pack("!BBHII", 0x80, marker | META_PT, self.seq, rtp_ts, self.ssrc)
            self.seq = (self.seq + 1) & 0xFFFF
            yield hdr + chunk

    def push_doc(self, xml):
        rt = self.appsrc.get_current_running_time()
        if rt == Gst.CLOCK_TIME_NONE:
            rt = 0
        rtp_ts = (self.ts_base + rt * 90000 // Gst.SECOND) & 0xFFFFFFFF
        for pkt in self.packets(xml, rtp_ts):
            buf = Gst.Buffer.new_wrapped(pkt)
            ret = self.appsrc.emit("push-buffer", buf)
            if ret not in (Gst.FlowReturn.OK,):
                return False
        return True

    def tick(self):
        if self.stopped:
            return False
        ok = self.push_doc(frame_doc(self.n, 0, 0))
        if ok and self.motion_every > 0 and self.n % self.motion_every == 0:
            self.motion = not self.motion
            ok = self.push_doc(motion_doc(self.motion))
        self.n += 1
        if not ok:  # flushing / media torn down
            self.stopped = True
            return False
        return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--mount", default="/cam")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--gop", type=int, default=30, help="key frame interval in frames")
    ap.add_argument("--bitrate", type=int, default=800, help="x264 kbit/s")
    ap.add_argument("--no-metadata", action="store_true")
    ap.add_argument("--meta-interval-ms", type=int, default=200)
    ap.add_argument("--motion-every", type=int, default=10, help="toggle motion event every N metadata frames (0=off)")
    ap.add_argument("--not-shared", action="store_true", help="one pipeline per client (default: shared)")
    args = ap.parse_args()

    Gst.init(None)
    video = (
        f"videotestsrc is-live=true pattern=ball ! video/x-raw,width={args.width},height={args.height},"
        f"framerate={args.fps}/1 ! "
        f"x264enc threads=1 tune=zerolatency speed-preset=ultrafast bitrate={args.bitrate} key-int-max={args.gop} "
        "bframes=0 ! video/x-h264,profile=baseline ! "
        "rtph264pay name=pay0 pt=96 config-interval=-1 aggregate-mode=zero-latency"
    )
    meta = "" if args.no_metadata else (
        f' appsrc name=pay1 is-live=true do-timestamp=true format=time caps="{META_CAPS}"'
    )
    launch = f"( {video}{meta} )"

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(not args.not_shared)
    factory.set_latency(0)
    feeders = []

    def on_configure(_factory, media):
        if args.no_metadata:
            return
        appsrc = media.get_element().get_by_name("pay1")
        feeder = MetadataFeeder(appsrc, args.meta_interval_ms, args.motion_every)
        feeders.append(feeder)

        def on_unprepared(_m):
            feeder.stopped = True
        media.connect("unprepared", on_unprepared)

    factory.connect("media-configure", on_configure)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print("failed to attach RTSP server (port in use?)", file=sys.stderr)
        sys.exit(1)

    loop = GLib.MainLoop()
    for s in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, s, loop.quit)
    print(f"READY rtsp://{args.host}:{args.port}{args.mount} pid={os.getpid()} "
          f"metadata={'off' if args.no_metadata else 'on'}", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
