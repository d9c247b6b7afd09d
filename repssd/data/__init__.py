"""Datasets (VOC, COCO, CrowdHuman, PennFudanPed, CityPersons, MOTChallenge, WiderPerson, synthetic
crowds), SSD transforms and batching."""
from .base import DatasetError, DetectionDataset, Problem
from .citypersons import CityPersonsDetection
from .classes import VOC_CLASSES
from .coco import COCODetection
from .collate import collate
from .copypaste import CrowdCopyPaste, PersonBank, copy_paste_then
from .crowdhuman import CrowdHumanDetection
from .mot import MOTDetection
from .pennfudan import PennFudanDetection
from .transforms import SSDTestTransform, SSDTrainTransform, TileCrop, parse_tile_crop
from .voc import VOCDetection, read_classes, voc0712
from .widerperson import WiderPersonDetection

__all__ = ["VOC_CLASSES", "DatasetError", "DetectionDataset", "Problem", "VOCDetection", "voc0712", "read_classes",
           "COCODetection", "CrowdHumanDetection", "PennFudanDetection", "CityPersonsDetection", "MOTDetection",
           "WiderPersonDetection", "CrowdCopyPaste", "PersonBank", "copy_paste_then", "SSDTrainTransform", "SSDTestTransform", "TileCrop",
           "parse_tile_crop", "collate"]
