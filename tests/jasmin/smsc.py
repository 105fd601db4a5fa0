#!/usr/bin/env python3
"""A small SMPP 3.4 SMSC simulator (server side) for switchboard's Jasmin tests.

Jasmin's smppc connector binds to it (bind_transceiver, or transmitter/receiver). It:

* answers bind_*, enquire_link, unbind (and generic_nack for anything it does not know);
* answers every submit_sm with submit_sm_resp and a fresh message id (uppercase hex, never
  a leading 0: Jasmin upper-cases and strips leading zeros of DLR ids), and appends the
  submit_sm as one JSON line to --submits (fields below);
* when the submit_sm's registered_delivery asks (bits 0-1 == 1, or == 2 and the receipt is a
  failure), sends a delivery receipt deliver_sm (esm_class 0x04, text
  `id:<msgid> sub:001 dlvrd:001 submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DELIVRD
  err:000 text:<first 20 chars>`, plus TLVs receipted_message_id and message_state) and
  waits for its deliver_sm_resp;
* injects MO deliver_sm on command from a control port (loopback TCP, one JSON object per
  line in, one JSON object per line out) and reports Jasmin's deliver_sm_resp status.

PDUs are encoded with plain struct so that any data_coding (0..255), esm_class and
short_message bytes can be sent exactly as given. Standard library only.

Control commands (each a JSON line; the answer is one JSON line with "ok": true|false):

  {"cmd": "status"}
      -> {"ok": true, "binds": [{"system_id": "...", "bind": "transceiver", ...}],
          "submits": N, "receipts_acked": N}
  {"cmd": "deliver", "source_addr": "8613800138000", "destination_addr": "10000",
   "data_coding": 8, "esm_class": 64, "short_message_hex": "0500030a0201...",
   "message_payload_hex": "...",            # optional TLV 0x0424
   "sar_msg_ref_num": 7, "sar_total_segments": 2, "sar_segment_seqnum": 1,   # optional
   "tlvs": [{"tag": 1234, "value_hex": "00"}],                                # optional
   "source_addr_ton": 1, "source_addr_npi": 1, "dest_addr_ton": 0, "dest_addr_npi": 1,
   "protocol_id": 0, "priority_flag": 0, "registered_delivery": 0,
   "timeout": 10}
      -> {"ok": true, "command_status": 0, "sequence_number": 12, "message_id": ""}
         (command_status is Jasmin's deliver_sm_resp status: 0 = ESME_ROK)
      -> {"ok": false, "error": "no bound receiver"} / "timeout waiting for deliver_sm_resp"
  {"cmd": "receipts", "stat": "DELIVRD", "err": "000", "delay": 0.2}
      receipts for the following submits: stat DELIVRD|UNDELIV|REJECTD|EXPIRED|...,
      or "none" to send no receipts; delay in seconds after the submit_sm_resp.
  {"cmd": "submit_status", "statuses": [88, 0]}
      the next submit_sm are answered with these command_status values in order (e.g.
      0x58 = 88 ESME_RTHROTTLED); no message id and no receipt for a non-zero status.

submits JSONL fields: seq (1..), at (unix seconds, float), system_id, sequence_number,
service_type, source_addr_ton, source_addr_npi, source_addr, dest_addr_ton, dest_addr_npi,
destination_addr, esm_class, protocol_id, priority_flag, schedule_delivery_time,
validity_period, registered_delivery, replace_if_present_flag, data_coding,
sm_default_msg_id, short_message_hex (all of short_message), udh_hex (the UDH when
esm_class has 0x40, else null), payload_hex (short_message without the UDH),
tlvs ({"0x0424": "hex", ...}), command_status (what we answered), message_id.
"""

import argparse
import asyncio
import json
import struct
import sys
import time
import random

GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
RESP = 0x80000000

BIND_NAMES = {BIND_RECEIVER: "receiver", BIND_TRANSMITTER: "transmitter",
              BIND_TRANSCEIVER: "transceiver"}

TLV_SAR_MSG_REF_NUM = 0x020C
TLV_SAR_TOTAL_SEGMENTS = 0x020E
TLV_SAR_SEGMENT_SEQNUM = 0x020F
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427

MESSAGE_STATE = {"ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5,
                 "ACCEPTD": 6, "UNKNOWN": 7, "REJECTD": 8}

LOG = None


def log(msg):
    line = "%s %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), msg)
    if LOG is not None:
        LOG.write(line)
        LOG.flush()
    sys.stderr.write(line)
    sys.stderr.flush()


def cstr(b, i):
    """C-octet string at i -> (bytes, next index)."""
    j = b.index(b"\x00", i)
    return b[i:j], j + 1


def enc_cstr(s):
    if isinstance(s, str):
        s = s.encode("latin-1")
    return s + b"\x00"


def pdu(command_id, status, seq, body=b""):
    return struct.pack(">IIII", 16 + len(body), command_id, status, seq) + body


def parse_sm(body):
    """Body of submit_sm / deliver_sm -> dict."""
    f = {}
    i = 0
    v, i = cstr(body, i)
    f["service_type"] = v.decode("latin-1")
    f["source_addr_ton"], f["source_addr_npi"] = body[i], body[i + 1]
    i += 2
    v, i = cstr(body, i)
    f["source_addr"] = v.decode("latin-1")
    f["dest_addr_ton"], f["dest_addr_npi"] = body[i], body[i + 1]
    i += 2
    v, i = cstr(body, i)
    f["destination_addr"] = v.decode("latin-1")
    f["esm_class"], f["protocol_id"], f["priority_flag"] = body[i], body[i + 1], body[i + 2]
    i += 3
    v, i = cstr(body, i)
    f["schedule_delivery_time"] = v.decode("latin-1")
    v, i = cstr(body, i)
    f["validity_period"] = v.decode("latin-1")
    (f["registered_delivery"], f["replace_if_present_flag"], f["data_coding"],
     f["sm_default_msg_id"], sm_length) = body[i:i + 5]
    i += 5
    sm = body[i:i + sm_length]
    i += sm_length
    tlvs = {}
    while i + 4 <= len(body):
        tag, length = struct.unpack(">HH", body[i:i + 4])
        tlvs["0x%04X" % tag] = body[i + 4:i + 4 + length].hex()
        i += 4 + length
    f["short_message_hex"] = sm.hex()
    udh = None
    payload = sm
    if f["esm_class"] & 0x40 and len(sm) >= 1 and len(sm) >= 1 + sm[0]:
        udh = sm[:1 + sm[0]]
        payload = sm[1 + sm[0]:]
    f["udh_hex"] = udh.hex() if udh is not None else None
    f["payload_hex"] = payload.hex()
    f["tlvs"] = tlvs
    return f


def enc_sm(d):
    """dict (deliver command) -> deliver_sm body."""
    sm = bytes.fromhex(d.get("short_message_hex", ""))
    if len(sm) > 254:
        raise ValueError("short_message longer than 254 bytes: use message_payload_hex")
    body = b"".join([
        enc_cstr(d.get("service_type", "")),
        bytes([d.get("source_addr_ton", 1), d.get("source_addr_npi", 1)]),
        enc_cstr(d["source_addr"]),
        bytes([d.get("dest_addr_ton", 0), d.get("dest_addr_npi", 1)]),
        enc_cstr(d["destination_addr"]),
        bytes([d.get("esm_class", 0) & 0xFF, d.get("protocol_id", 0) & 0xFF,
               d.get("priority_flag", 0) & 0xFF]),
        enc_cstr(""), enc_cstr(""),
        bytes([d.get("registered_delivery", 0) & 0xFF, 0, d.get("data_coding", 0) & 0xFF, 0,
               len(sm)]),
        sm,
    ])
    tlvs = []
    if "sar_msg_ref_num" in d:
        tlvs.append((TLV_SAR_MSG_REF_NUM, struct.pack(">H", d["sar_msg_ref_num"])))
    if "sar_total_segments" in d:
        tlvs.append((TLV_SAR_TOTAL_SEGMENTS, bytes([d["sar_total_segments"]])))
    if "sar_segment_seqnum" in d:
        tlvs.append((TLV_SAR_SEGMENT_SEQNUM, bytes([d["sar_segment_seqnum"]])))
    if "message_payload_hex" in d:
        tlvs.append((TLV_MESSAGE_PAYLOAD, bytes.fromhex(d["message_payload_hex"])))
    for t in d.get("tlvs", []):
        tlvs.append((int(t["tag"]), bytes.fromhex(t.get("value_hex", ""))))
    for tag, value in tlvs:
        body += struct.pack(">HH", tag, len(value)) + value
    return body


class Smsc:
    def __init__(self, args):
        self.args = args
        self.sessions = []  # bound Session objects, oldest first
        self.submit_count = 0
        self.receipts_acked = 0
        self.receipt_stat = args.receipt_stat
        self.receipt_err = "000"
        self.receipt_delay = args.receipt_delay
        self.submit_statuses = []
        self.msgid_prefix = random.randint(1, 15)
        self.msgid_counter = 0
        self.submits_file = open(args.submits, "a", encoding="utf-8")

    def next_message_id(self):
        self.msgid_counter += 1
        # 'A1B2C3...' style, no leading zero, unique per simulator run
        return "%X%07X%04X" % (self.msgid_prefix, random.getrandbits(28), self.msgid_counter)

    def record(self, rec):
        self.submits_file.write(json.dumps(rec, sort_keys=True) + "\n")
        self.submits_file.flush()

    def receiver(self):
        for s in reversed(self.sessions):
            if s.bind in ("receiver", "transceiver") and not s.closed:
                return s
        return None


class Session:
    def __init__(self, smsc, reader, writer):
        self.smsc = smsc
        self.reader = reader
        self.writer = writer
        self.bind = None
        self.system_id = None
        self.closed = False
        self.seq = random.randint(1, 1000) * 1000
        self.pending = {}
        self.peer = writer.get_extra_info("peername")

    def next_seq(self):
        self.seq = (self.seq % 0x7FFFFFFF) + 1
        return self.seq

    def send(self, data):
        if not self.closed:
            self.writer.write(data)

    async def request(self, command_id, body, timeout):
        seq = self.next_seq()
        fut = asyncio.get_running_loop().create_future()
        self.pending[seq] = fut
        self.send(pdu(command_id, 0, seq, body))
        await self.writer.drain()
        try:
            status, rbody = await asyncio.wait_for(fut, timeout)
        finally:
            self.pending.pop(seq, None)
        return seq, status, rbody

    async def run(self):
        log("connection from %s" % (self.peer,))
        try:
            while True:
                head = await self.reader.readexactly(16)
                length, cid, status, seq = struct.unpack(">IIII", head)
                if length < 16 or length > 70000:
                    log("bad command_length %d, closing" % length)
                    break
                body = await self.reader.readexactly(length - 16)
                await self.handle(cid, status, seq, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed = True
            if self in self.smsc.sessions:
                self.smsc.sessions.remove(self)
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection closed"))
            try:
                self.writer.close()
            except Exception:
                pass
            log("connection from %s closed (system_id %s)" % (self.peer, self.system_id))

    async def handle(self, cid, status, seq, body):
        if cid & RESP:
            fut = self.pending.get(seq)
            if fut is not None and not fut.done():
                fut.set_result((status, body))
            elif cid != GENERIC_NACK:
                log("unexpected response 0x%08X seq %d" % (cid, seq))
            return
        if cid in BIND_NAMES:
            system_id, i = cstr(body, 0)
            password, i = cstr(body, i)
            self.system_id = system_id.decode("latin-1")
            ok = ((not self.smsc.args.system_id or self.system_id == self.smsc.args.system_id)
                  and (not self.smsc.args.password
                       or password.decode("latin-1") == self.smsc.args.password))
            if not ok:
                log("bind %s refused for %s" % (BIND_NAMES[cid], self.system_id))
                self.send(pdu(cid | RESP, 0x0E, seq))  # ESME_RINVPASWD
                return
            self.bind = BIND_NAMES[cid]
            self.smsc.sessions.append(self)
            log("bound %s system_id=%s" % (self.bind, self.system_id))
            self.send(pdu(cid | RESP, 0, seq, enc_cstr("SBSMSC")))
        elif cid == ENQUIRE_LINK:
            self.send(pdu(ENQUIRE_LINK | RESP, 0, seq))
        elif cid == UNBIND:
            self.send(pdu(UNBIND | RESP, 0, seq))
            await self.writer.drain()
            if self in self.smsc.sessions:
                self.smsc.sessions.remove(self)
            self.closed = True
            self.writer.close()
        elif cid == SUBMIT_SM:
            await self.on_submit(seq, body)
        else:
            log("unsupported command 0x%08X: generic_nack" % cid)
            self.send(pdu(GENERIC_NACK, 0x03, seq))  # ESME_RINVCMDID

    async def on_submit(self, seq, body):
        smsc = self.smsc
        try:
            f = parse_sm(body)
        except Exception as e:  # malformed
            log("malformed submit_sm: %r" % e)
            self.send(pdu(SUBMIT_SM | RESP, 0x01, seq))  # ESME_RINVMSGLEN
            return
        status = smsc.submit_statuses.pop(0) if smsc.submit_statuses else 0
        msgid = smsc.next_message_id() if status == 0 else ""
        smsc.submit_count += 1
        f.update({"seq": smsc.submit_count, "at": time.time(), "system_id": self.system_id,
                  "sequence_number": seq, "command_status": status, "message_id": msgid})
        smsc.record(f)
        log("submit_sm #%d from=%s to=%s dcs=%d esm=0x%02X rd=%d sm=%s tlvs=%s -> status %d id %s"
            % (f["seq"], f["source_addr"], f["destination_addr"], f["data_coding"],
               f["esm_class"], f["registered_delivery"], f["short_message_hex"], f["tlvs"],
               status, msgid))
        self.send(pdu(SUBMIT_SM | RESP, status, seq, enc_cstr(msgid) if status == 0 else b""))
        await self.writer.drain()
        rd = f["registered_delivery"] & 0x03
        stat = smsc.receipt_stat
        if status == 0 and stat != "none" and (rd == 1 or (rd == 2 and stat != "DELIVRD")):
            asyncio.get_running_loop().create_task(self.receipt(f, msgid, stat, smsc.receipt_err))

    async def receipt(self, f, msgid, stat, err):
        await asyncio.sleep(self.smsc.receipt_delay)
        now = time.strftime("%y%m%d%H%M")
        sm = bytes.fromhex(f["payload_hex"])[:20]
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in sm)
        dlvrd = "001" if stat == "DELIVRD" else "000"
        content = ("id:%s sub:001 dlvrd:%s submit date:%s done date:%s stat:%s err:%s text:%s"
                   % (msgid, dlvrd, now, now, stat, err, text)).encode("latin-1")
        d = {"source_addr": f["destination_addr"], "source_addr_ton": f["dest_addr_ton"],
             "source_addr_npi": f["dest_addr_npi"], "destination_addr": f["source_addr"],
             "dest_addr_ton": f["source_addr_ton"], "dest_addr_npi": f["source_addr_npi"],
             "esm_class": 0x04, "data_coding": 0, "short_message_hex": content.hex(),
             "tlvs": [{"tag": TLV_RECEIPTED_MESSAGE_ID, "value_hex": enc_cstr(msgid).hex()},
                      {"tag": TLV_MESSAGE_STATE,
                       "value_hex": "%02x" % MESSAGE_STATE.get(stat, 7)}]}
        target = self if (self.bind in ("receiver", "transceiver") and not self.closed) \
            else self.smsc.receiver()
        if target is None:
            log("receipt for %s: no bound receiver" % msgid)
            return
        try:
            seq, status, _ = await target.request(DELIVER_SM, enc_sm(d), 30)
            self.smsc.receipts_acked += 1
            log("receipt deliver_sm seq %d for %s stat %s -> deliver_sm_resp status %d"
                % (seq, msgid, stat, status))
        except Exception as e:
            log("receipt for %s failed: %r" % (msgid, e))


async def control(smsc, reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            try:
                cmd = json.loads(line)
                answer = await do_command(smsc, cmd)
            except Exception as e:
                answer = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
            writer.write((json.dumps(answer) + "\n").encode())
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def do_command(smsc, cmd):
    c = cmd.get("cmd")
    if c == "status":
        return {"ok": True, "submits": smsc.submit_count, "receipts_acked": smsc.receipts_acked,
                "binds": [{"system_id": s.system_id, "bind": s.bind, "peer": str(s.peer)}
                          for s in smsc.sessions if not s.closed]}
    if c == "deliver":
        target = smsc.receiver()
        if target is None:
            return {"ok": False, "error": "no bound receiver"}
        body = enc_sm(cmd)
        try:
            seq, status, rbody = await target.request(DELIVER_SM, body, cmd.get("timeout", 10))
        except asyncio.TimeoutError:
            return {"ok": False, "error": "timeout waiting for deliver_sm_resp"}
        mid = rbody.split(b"\x00")[0].decode("latin-1") if rbody else ""
        log("MO deliver_sm seq %d from=%s to=%s dcs=%d esm=0x%02X sm=%s -> status %d"
            % (seq, cmd["source_addr"], cmd["destination_addr"], cmd.get("data_coding", 0),
               cmd.get("esm_class", 0), cmd.get("short_message_hex", ""), status))
        return {"ok": True, "command_status": status, "sequence_number": seq, "message_id": mid}
    if c == "receipts":
        smsc.receipt_stat = cmd.get("stat", "DELIVRD")
        smsc.receipt_err = cmd.get("err", "000")
        smsc.receipt_delay = float(cmd.get("delay", smsc.receipt_delay))
        return {"ok": True}
    if c == "submit_status":
        smsc.submit_statuses = [int(s) for s in cmd.get("statuses", [])]
        return {"ok": True}
    return {"ok": False, "error": "unknown cmd %r" % c}


async def main():
    global LOG
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smpp-port", type=int, required=True)
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--submits", required=True, help="JSONL file of received submit_sm")
    ap.add_argument("--log", help="log file (also on stderr)")
    ap.add_argument("--system-id", default="", help="required system_id (empty: any)")
    ap.add_argument("--password", default="", help="required password (empty: any)")
    ap.add_argument("--receipt-stat", default="DELIVRD")
    ap.add_argument("--receipt-delay", type=float, default=0.2)
    args = ap.parse_args()
    if args.log:
        LOG = open(args.log, "a", encoding="utf-8")
    smsc = Smsc(args)

    async def on_smpp(reader, writer):
        await Session(smsc, reader, writer).run()

    async def on_control(reader, writer):
        await control(smsc, reader, writer)

    s1 = await asyncio.start_server(on_smpp, "127.0.0.1", args.smpp_port)
    s2 = await asyncio.start_server(on_control, "127.0.0.1", args.control_port)
    log("SMSC simulator listening: smpp 127.0.0.1:%d control 127.0.0.1:%d"
        % (args.smpp_port, args.control_port))
    async with s1, s2:
        await asyncio.gather(s1.serve_forever(), s2.serve_forever())


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
