import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createTopicScheme, TOPIC_KIND_NAMES, TOPIC_KINDS } from './index.ts';

const topics = createTopicScheme();
const prototypeNames = new Set(Object.getOwnPropertyNames(Object.prototype).map((n) => n.toLowerCase()));
const deviceId = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/).filter((id) => !prototypeNames.has(id.toLowerCase()));
const kind = fc.constantFrom(...TOPIC_KIND_NAMES);

describe('topic scheme', () => {
  it('builds the documented layout', () => {
    expect(topics.build('desired', 'cam-042')).toBe('edgefleet/v1/devices/cam-042/desired');
    expect(topics.fleetFilter('telemetry')).toBe('edgefleet/v1/devices/+/telemetry');
    expect(createTopicScheme('acme/plant-7').build('events', 'x1')).toBe('acme/plant-7/v1/devices/x1/events');
  });

  it('round-trips parse(build(x)) for every kind and valid device id', () => {
    fc.assert(
      fc.property(deviceId, kind, (id, k) => {
        expect(topics.parse(topics.build(k, id))).toEqual({ deviceId: id, kind: k });
      }),
    );
  });

  it.each(['a+b', '#', 'a/b', '', 'a b', '$SYS', '../x', 'x'.repeat(65), 'constructor', '__proto__', 'caf\u00e9'])(
    'refuses device id %j, which could escape its topic subtree',
    (id) => {
      expect(() => topics.build('desired', id)).toThrow(expect.objectContaining({ code: 'EF_DEVICE_ID_INVALID' }));
    },
  );

  it('refuses any device id containing a wildcard, separator or nothing at all', () => {
    fc.assert(
      fc.property(fc.string(), fc.constantFrom('+', '#', '/', '\u0000'), fc.string(), (a, bad, b) => {
        expect(() => topics.build('reported', `${a}${bad}${b}`)).toThrow(expect.objectContaining({ code: 'EF_DEVICE_ID_INVALID' }));
      }),
    );
  });

  it.each([
    'edgefleet/v1/devices/cam-1',
    'edgefleet/v1/devices/cam-1/desired/extra',
    'edgefleet/v1/devices//desired',
    'edgefleet/v1/devices/+/desired',
    'edgefleet/v1/devices/cam-1/constructor',
    'edgefleet/v2/devices/cam-1/desired',
    'other/v1/devices/cam-1/desired',
  ])('refuses to parse %j', (topic) => {
    expect(() => topics.parse(topic)).toThrow(expect.objectContaining({ code: 'EF_TOPIC_INVALID' }));
  });

  it('never throws anything but EF_TOPIC_INVALID on arbitrary topics', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (topic) => {
        try {
          topics.parse(`edgefleet/v1/devices/${topic}`);
        } catch (error) {
          expect(error).toMatchObject({ code: 'EF_TOPIC_INVALID' });
        }
      }),
    );
  });

  it('lets a device publish only to its own device-to-server topics', () => {
    for (const k of TOPIC_KIND_NAMES) {
      const own = topics.build(k, 'dev-a');
      expect(topics.deviceMayPublish('dev-a', own)).toBe(TOPIC_KINDS[k].direction === 'from-device');
      expect(topics.deviceMayPublish('dev-b', own)).toBe(false);
    }
    expect(topics.deviceMayPublish('dev-a', 'edgefleet/v1/devices/+/telemetry')).toBe(false);
    expect(topics.deviceMayPublish('dev-a', 'somewhere/else')).toBe(false);
  });

  it('lets a device subscribe only to its own server-to-device topics and its own reported state', () => {
    expect(topics.deviceMaySubscribe('dev-a', topics.build('desired', 'dev-a'))).toBe(true);
    expect(topics.deviceMaySubscribe('dev-a', topics.build('reported', 'dev-a'))).toBe(true);
    expect(topics.deviceMaySubscribe('dev-a', topics.build('telemetry', 'dev-a'))).toBe(false);
    expect(topics.deviceMaySubscribe('dev-a', topics.build('desired', 'dev-b'))).toBe(false);
    for (const filter of ['edgefleet/v1/devices/+/desired', 'edgefleet/v1/devices/dev-a/#', '#', 'edgefleet/#']) {
      expect(topics.deviceMaySubscribe('dev-a', filter)).toBe(false);
    }
  });

  it.each(['', '$SYS', 'a/+', 'a/#', 'a//b', 'a/b/c/d/e'])('refuses topic root %j', (root) => {
    expect(() => createTopicScheme(root)).toThrow(expect.objectContaining({ code: 'EF_TOPIC_INVALID' }));
  });
});
